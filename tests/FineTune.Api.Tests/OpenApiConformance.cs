using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace FineTune.Api.Tests;

/// <summary>
/// Real responses checked against the host's own OpenAPI document (<c>openapi/v1.json</c>): the status must be declared
/// for the route, the content type too, and a JSON body must validate against the declared schema (OpenAPI 3.1 schemas
/// are JSON Schema 2020-12; the document's components become the schema's <c>$defs</c>).
/// </summary>
public sealed class OpenApiConformance
{
    private readonly JsonObject _paths;
    private readonly JsonNode _definitions;

    private OpenApiConformance(JsonObject document)
    {
        _paths = document["paths"]!.AsObject();
        _definitions = JsonNode.Parse(document["components"]?["schemas"]?.ToJsonString().Replace("#/components/schemas/", "#/$defs/", StringComparison.Ordinal) ?? "{}")!;
    }

    public static async Task<OpenApiConformance> LoadAsync(HttpClient http) =>
        new(JsonNode.Parse(await http.GetStringAsync("openapi/v1.json"))!.AsObject());

    /// <summary>Fails unless <paramref name="response"/> is what the document declares for <paramref name="method"/> <paramref name="route"/>.</summary>
    /// <param name="route">the document's path template: <c>/api/finetune/{id}/predict</c></param>
    public async Task AssertConformsAsync(HttpResponseMessage response, string method, string route)
    {
        int status = (int)response.StatusCode;
        string body = await response.Content.ReadAsStringAsync();
        var operation = _paths[route]?[method.ToLowerInvariant()] ?? throw new Xunit.Sdk.XunitException($"{method} {route} is not in the OpenAPI document");
        var declared = operation["responses"]?[status.ToString(System.Globalization.CultureInfo.InvariantCulture)]
            ?? throw new Xunit.Sdk.XunitException($"{method} {route} answered {status}, which the document does not declare: {body}");
        string? mediaType = response.Content.Headers.ContentType?.MediaType;
        if (declared["content"] is not JsonObject content)
        {
            Assert.True(body.Length == 0, $"{method} {route} {status}: the document declares no body, the response has one: {body}");
            return;
        }
        var schemaNode = content[mediaType ?? ""]?["schema"]
            ?? throw new Xunit.Sdk.XunitException($"{method} {route} {status}: content type {mediaType} is not declared (declared: {string.Join(", ", content.Select(c => c.Key))})");
        // A file streamed as it is stored (a model card is JSON, yet a file): its bytes have no schema.
        var resolved = schemaNode["$ref"]?.GetValue<string>() is { } reference ? _definitions[reference.Split('/')[^1]] : schemaNode;
        if (mediaType is not ("application/json" or "application/problem+json") || resolved?["format"]?.GetValue<string>() == "binary") return;

        var schema = JsonNode.Parse(schemaNode.ToJsonString().Replace("#/components/schemas/", "#/$defs/", StringComparison.Ordinal))!.AsObject();
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema";
        schema["$defs"] = _definitions.DeepClone();
        var result = JsonSchema.FromText(schema.ToJsonString()).Evaluate(JsonDocument.Parse(body).RootElement,
            new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"{method} {route} {status}: the body does not match the declared schema:{Environment.NewLine}"
            + string.Join(Environment.NewLine, (result.Details ?? []).Where(d => d.Errors is { Count: > 0 })
                .Select(d => $"{d.InstanceLocation} ({d.EvaluationPath}): {string.Join("; ", d.Errors!.Values)}"))
            + $"{Environment.NewLine}body: {body[..Math.Min(body.Length, 2000)]}");
    }
}
