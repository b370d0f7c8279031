using System.Text.Json;

namespace FineTune.Infra.Tests;

/// <summary>
/// infra/main.bicep compiled by the real Bicep CLI and linted with zero warnings, and what matters asserted
/// on the ARM template it compiles to. Only a deployment to a real subscription shows the rest.
/// </summary>
public sealed class BicepTemplateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bicep-").FullName;
    private readonly Lazy<JsonElement> _template;

    public BicepTemplateTests() => _template = new(() => Build("infra/main.bicep"));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private JsonElement Template => _template.Value;

    [Fact]
    public void EveryBicepFileBuildsAndLintsWithoutAWarning()
    {
        var files = Directory.GetFiles(Path.Combine(Tools.Root, "infra"), "*.bicep*");
        Assert.Contains(files, f => f.EndsWith("main.bicep", StringComparison.Ordinal));
        foreach (var file in files)
        {
            var relative = Path.GetRelativePath(Tools.Root, file);
            var (exit, output, error) = file.EndsWith(".bicepparam", StringComparison.Ordinal)
                ? Tools.Run(Tools.Bicep, "build-params", relative, "--outfile", Path.Combine(_dir, "p.json"))
                : Tools.Run(Tools.Bicep, "lint", relative);
            Assert.True(exit == 0 && error.Trim().Length == 0 && output.Trim().Length == 0, $"{relative}: exit {exit}\n{output}{error}");
        }
    }

    [Fact]
    public void TheIdentityGetsExactlyBlobQueueAndTableDataRolesOnItsStorage()
    {
        var assignments = Resources("Microsoft.Authorization/roleAssignments").ToList();
        var storageRoles = assignments.Single(a => a.GetProperty("scope").GetString()!.Contains("Microsoft.Storage/storageAccounts'"));
        Assert.Equal("[length(createArray(variables('storageBlobDataOwner'), variables('storageQueueDataContributor'), variables('storageTableDataContributor')))]",
            storageRoles.GetProperty("copy").GetProperty("count").GetString());
        var variables = Template.GetProperty("variables");
        Assert.Equal("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", variables.GetProperty("storageBlobDataOwner").GetString());
        Assert.Equal("974c5e8b-45b9-4653-ba55-5f855dd0fb88", variables.GetProperty("storageQueueDataContributor").GetString());
        Assert.Equal("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", variables.GetProperty("storageTableDataContributor").GetString());
        Assert.Equal("ServicePrincipal", storageRoles.GetProperty("properties").GetProperty("principalType").GetString());
        var registry = assignments.Single(a => a.GetProperty("scope").GetString()!.Contains("Microsoft.ContainerRegistry"));
        Assert.Equal("[parameters('enableGpu')]", registry.GetProperty("condition").GetString());
        Assert.Equal("7f951dda-4ed3-4680-a7ca-43fe172d538d", variables.GetProperty("acrPull").GetString());
        Assert.Contains("variables('acrPull')", registry.GetProperty("properties").GetProperty("roleDefinitionId").GetString());
        Assert.Equal(3, assignments.Count);
    }

    [Fact]
    public void UploadersMayWriteTheUploadsContainerAndNothingElse()
    {
        var uploads = Resources("Microsoft.Authorization/roleAssignments").Single(a => a.GetProperty("name").GetString()!.Contains("variables('uploadsContainer')"));
        Assert.Equal("[length(parameters('uploaderPrincipalIds'))]", uploads.GetProperty("copy").GetProperty("count").GetString());
        Assert.Contains("blobServices/containers", uploads.GetProperty("scope").GetString());
        Assert.Contains("variables('storageBlobDataContributor')", uploads.GetProperty("properties").GetProperty("roleDefinitionId").GetString());
        Assert.Equal("ba92f5b4-2d11-453d-a403-e96b0029c9fe", Template.GetProperty("variables").GetProperty("storageBlobDataContributor").GetString());
        var variables = Template.GetProperty("variables");
        Assert.NotEqual(variables.GetProperty("uploadsContainer").GetString(), variables.GetProperty("artifactsContainer").GetString());
        foreach (var app in Resources("Microsoft.Web/sites").Concat(Resources("Microsoft.App/containerApps")))
            Assert.Contains("nameArtifacts__UploadsContainerNamevalue", new string(app.GetRawText().Where(c => !"\"' :,\n".Contains(c)).ToArray()));
    }

    [Fact]
    public void NoStorageKeyReachesTheAppAndStorageRefusesKeys()
    {
        var storage = Resources("Microsoft.Storage/storageAccounts").Single().GetProperty("properties");
        Assert.False(storage.GetProperty("allowSharedKeyAccess").GetBoolean());
        Assert.False(storage.GetProperty("allowBlobPublicAccess").GetBoolean());
        Assert.True(storage.GetProperty("supportsHttpsTrafficOnly").GetBoolean());
        Assert.Equal("TLS1_2", storage.GetProperty("minimumTlsVersion").GetString());

        foreach (var app in Resources("Microsoft.Web/sites").Concat(Resources("Microsoft.App/containerApps")))
        {
            // Settings are JSON objects in one resource and createObject(...) expressions in the other: compare without punctuation.
            string settings = new string(app.GetRawText().Where(c => !"\"' :,\n".Contains(c)).ToArray());
            Assert.Contains("nameAzureWebJobsStorage__accountNamevalue", settings);
            Assert.Contains("nameAzureWebJobsStorage__credentialvaluemanagedidentity", settings);
            Assert.Contains("nameArtifacts__AccountUrlvalue", settings);
            Assert.DoesNotContain("nameAzureWebJobsStoragevalue", settings);
            Assert.DoesNotContain("listKeys", settings);
            Assert.DoesNotContain("AccountKey", settings);
            Assert.DoesNotContain("WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", settings);
        }
    }

    [Fact]
    public void TheAppIsHttpsOnlyWithTls12OnALinuxElasticPremiumPlan()
    {
        var site = Resources("Microsoft.Web/sites").Single();
        var properties = site.GetProperty("properties");
        Assert.True(properties.GetProperty("httpsOnly").GetBoolean());
        Assert.Equal("1.2", properties.GetProperty("siteConfig").GetProperty("minTlsVersion").GetString());
        Assert.Equal("Disabled", properties.GetProperty("siteConfig").GetProperty("ftpsState").GetString());
        Assert.Equal("DOTNET-ISOLATED|10.0", properties.GetProperty("siteConfig").GetProperty("linuxFxVersion").GetString());
        Assert.Equal("UserAssigned", site.GetProperty("identity").GetProperty("type").GetString());
        var plan = Resources("Microsoft.Web/serverfarms").Single();
        Assert.Equal("ElasticPremium", plan.GetProperty("sku").GetProperty("tier").GetString());
        Assert.True(plan.GetProperty("properties").GetProperty("reserved").GetBoolean());
        Assert.Equal(["EP1", "EP2", "EP3"], Allowed("planSku"));
    }

    [Fact]
    public void TheGpuOptionDeploysAGpuWorkloadProfileWhenChosen()
    {
        var environment = Resources("Microsoft.App/managedEnvironments").Single();
        Assert.Equal("[parameters('enableGpu')]", environment.GetProperty("condition").GetString());
        var profiles = environment.GetProperty("properties").GetProperty("workloadProfiles").EnumerateArray().ToList();
        Assert.Contains(profiles, p => p.GetProperty("workloadProfileType").GetString() == "[parameters('gpuProfile')]");
        Assert.Equal(["Consumption-GPU-NC8as-T4", "Consumption-GPU-NC24-A100"], Allowed("gpuProfile"));
        var app = Resources("Microsoft.App/containerApps").Single();
        Assert.Equal("gpu", app.GetProperty("properties").GetProperty("workloadProfileName").GetString());
        Assert.False(app.GetProperty("properties").GetProperty("configuration").GetProperty("ingress").GetProperty("allowInsecure").GetBoolean());

        var parameters = Build("infra/gpu.bicepparam", buildParams: true).GetProperty("parameters");
        Assert.True(parameters.GetProperty("enableGpu").GetProperty("value").GetBoolean());
        Assert.StartsWith("Consumption-GPU-", parameters.GetProperty("gpuProfile").GetProperty("value").GetString());
    }

    [Fact]
    public void EachAppHasItsOwnTaskHubAndTheGpuAppScalesOnItsHubsQueues()
    {
        var variables = Template.GetProperty("variables");
        Assert.NotEqual(variables.GetProperty("premiumTaskHub").GetString(), variables.GetProperty("gpuTaskHub").GetString());
        string Settings(JsonElement app) => new(app.GetRawText().Where(c => !"\"' :,\n".Contains(c)).ToArray());
        Assert.Contains("nameTaskHubNamevaluevariables(premiumTaskHub)", Settings(Resources("Microsoft.Web/sites").Single()));
        var app = Resources("Microsoft.App/containerApps").Single();
        Assert.Contains("nameTaskHubNamevaluevariables(gpuTaskHub)", Settings(app));

        var scale = app.GetProperty("properties").GetProperty("template").GetProperty("scale");
        Assert.Equal(0, scale.GetProperty("minReplicas").GetInt32());
        var rule = scale.GetProperty("copy").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "rules").GetProperty("input").GetProperty("azureQueue");
        Assert.Equal("[variables('gpuHubQueues')[copyIndex('rules')]]", rule.GetProperty("queueName").GetString());
        Assert.Equal(1, rule.GetProperty("queueLength").GetInt32());
        Assert.Contains("userAssignedIdentities", rule.GetProperty("identity").GetString());
        // The work-item queue (activities: training) and the control queues (orchestrations) of the GPU app's hub.
        string queues = Template.GetProperty("variables").GetProperty("copy").EnumerateArray()
            .Single(c => c.GetProperty("name").GetString() == "gpuHubQueues").GetRawText();
        foreach (var queue in new[] { "'workitems'", "'control-00'", "'control-03'", "toLower(variables('gpuTaskHub'))" })
            Assert.Contains(queue, queues);
    }

    [Fact]
    public void EntraIdSignInIsAnOptionOffByDefaultRequiredOnEveryRequestWhenChosen()
    {
        var parameters = Template.GetProperty("parameters");
        Assert.False(parameters.GetProperty("enableEntraAuth").GetProperty("defaultValue").GetBoolean());
        var site = Resources("Microsoft.Web/sites/config").Single();
        Assert.Equal("[parameters('enableEntraAuth')]", site.GetProperty("condition").GetString());
        Assert.EndsWith("'authsettingsV2')]", site.GetProperty("name").GetString());
        string siteAuth = site.GetProperty("properties").GetString()!;
        Assert.Contains("variables('entraAuth')", siteAuth);
        Assert.Contains("'requireAuthentication', true()", siteAuth);
        Assert.Contains("'requireHttps', true()", siteAuth);
        var gpu = Resources("Microsoft.App/containerApps/authConfigs").Single();
        Assert.Equal("[and(parameters('enableGpu'), parameters('enableEntraAuth'))]", gpu.GetProperty("condition").GetString());
        Assert.Contains("variables('entraAuth')", gpu.GetProperty("properties").GetString());

        var variables = Template.GetProperty("variables");
        Assert.True(variables.GetProperty("entraAuth").GetProperty("platform").GetProperty("enabled").GetBoolean());
        var entra = variables.GetProperty("entraAuth").GetProperty("identityProviders").GetProperty("azureActiveDirectory");
        Assert.Equal("[parameters('entraClientId')]", entra.GetProperty("registration").GetProperty("clientId").GetString());
        Assert.Contains("parameters('entraTenantId')", entra.GetProperty("registration").GetProperty("openIdIssuer").GetString());
        Assert.Equal("RedirectToLoginPage", variables.GetProperty("entraSignIn").GetProperty("unauthenticatedClientAction").GetString());

        var chosen = Build("infra/entra.bicepparam", buildParams: true).GetProperty("parameters");
        Assert.True(chosen.GetProperty("enableEntraAuth").GetProperty("value").GetBoolean());
        Assert.True(Guid.TryParse(chosen.GetProperty("entraClientId").GetProperty("value").GetString(), out _));
    }

    [Fact]
    public void OutputsGiveTheAppUrlAndStorageNames()
    {
        var outputs = Template.GetProperty("outputs");
        foreach (var name in new[] { "functionAppUrl", "storageAccountName", "artifactsContainer", "uploadsContainer", "jobsContainer", "gpuAppUrl" })
            Assert.True(outputs.TryGetProperty(name, out _), name);
    }

    private JsonElement Build(string file, bool buildParams = false)
    {
        string output = Path.Combine(_dir, Path.GetFileNameWithoutExtension(file) + ".json");
        var (exit, stdout, error) = Tools.Run(Tools.Bicep, buildParams ? "build-params" : "build", file, "--outfile", output);
        Assert.True(exit == 0, $"bicep {file}: {stdout}{error}");
        return JsonDocument.Parse(File.ReadAllText(output)).RootElement;
    }

    private IEnumerable<JsonElement> Resources(string type) =>
        Template.GetProperty("resources").EnumerateArray().Where(r => r.GetProperty("type").GetString() == type);

    private string[] Allowed(string parameter) =>
        Template.GetProperty("parameters").GetProperty(parameter).GetProperty("allowedValues").EnumerateArray().Select(v => v.GetString()!).ToArray();
}
