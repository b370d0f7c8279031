using System.Net;
using System.Reflection;
using FineTune.Api;
using FineTune.Api.Tests;
using FineTune.Workflow.Services;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.Abstractions;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Azure.Functions.Worker;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FineTune.Functions.Tests;

/// <summary>
/// The API scenarios that run against <c>finetune serve</c>, here against the Functions app's HTTP functions: each
/// request is routed by the functions' own trigger attributes (route and method), and the function is called with a
/// real <see cref="HttpRequest"/> and the real DurableTaskClient of the Durable Task in-process host, on Azurite.
/// </summary>
public sealed class FunctionsApiTests : ApiScenarios
{
    protected override async Task<IApiHost> StartAsync() => new FunctionsHost(await WorkflowHost.StartAsync());

    [Fact]
    public async Task PredictKeepsTheModelLoadedBetweenCalls()
    {
        await using var host = new FunctionsHost(await WorkflowHost.StartAsync());
        string dataset = await host.Workflow.UploadDatasetAsync("tux", perClass: 5, Classes);
        using var started = await host.Client.PostAsync("api/finetune", Json($$"""{ "jobId": "loaded", "dataset": { "location": "{{dataset}}", "resize": "pad" }, "training": { "epochs": 1, "batchSize": 4 } }"""));
        await PollAsync(host, "loaded", expectRunning: false);

        for (int call = 0; call < 3; call++)
            Assert.Equal(HttpStatusCode.OK, (await host.Client.PostAsync("api/finetune/loaded/predict", Images(TuxPaintStamps.Images("food", 1)[0]))).StatusCode);

        Assert.Equal(1, host.Models.Loads);
    }

    [Fact]
    public async Task TheDashboardIsServedAtTheRootWithoutAKey()
    {
        await using var host = new FunctionsHost(await WorkflowHost.StartAsync());
        using var page = await host.Client.GetAsync("/");
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("dashboard.js", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal("text/javascript", (await host.Client.GetAsync("/dashboard.js")).Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.NotFound, (await host.Client.GetAsync("/nothing.js")).StatusCode);
        var dashboard = typeof(FineTuneHttp).GetMethod(nameof(FineTuneHttp.Dashboard))!.GetParameters()[0].GetCustomAttribute<HttpTriggerAttribute>()!;
        Assert.Equal(AuthorizationLevel.Anonymous, dashboard.AuthLevel);
    }

    /// <summary>The Functions app's HTTP functions behind an <see cref="HttpClient"/>.</summary>
    private sealed class FunctionsHost : IApiHost
    {
        public FunctionsHost(WorkflowHost workflow)
        {
            Workflow = workflow;
            (Client, Models) = FunctionsClient.For(workflow);
        }

        public WorkflowHost Workflow { get; }
        public ModelPool Models { get; }
        public HttpClient Client { get; }
        public string Log => Workflow.Log.ToString();

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            Models.Dispose();
            await Workflow.DisposeAsync();
        }
    }
}

/// <summary>An <see cref="HttpClient"/> whose requests the Functions app's HTTP functions answer, over a workflow host's client and stores.</summary>
internal static class FunctionsClient
{
    public static (HttpClient Client, ModelPool Models) For(WorkflowHost workflow)
    {
        var options = Options.Create(new ApiOptions { ModelCacheDirectory = Path.Combine(workflow.WorkDirectory, "models") });
        var models = new ModelPool(workflow.Store, options);
        var services = new ServiceCollection().AddLogging().BuildServiceProvider();
        var api = new FineTuneApi(workflow.Store, workflow.Host.Services.GetRequiredService<UserUploads>(),
            workflow.Host.Services.GetRequiredService<FineTune.Workflow.Orchestration.RunControl>(),
            workflow.Host.Services.GetRequiredService<FineTune.Workflow.Services.RunCatalog>(), models, options);
        var client = new HttpClient(new FunctionsHandler(new FineTuneHttp(api), workflow.Host.Client, services)) { BaseAddress = new Uri("http://localhost/") };
        return (client, models);
    }

    /// <summary>Routes a request to the function whose HttpTrigger matches it, as the Functions host does, and runs its result.</summary>
    private sealed class FunctionsHandler(FineTuneHttp functions, DurableTaskClient client, IServiceProvider services) : HttpMessageHandler
    {
        private static readonly (MethodInfo Method, string[] Verbs, TemplateMatcher Route)[] Functions = typeof(FineTuneHttp).GetMethods()
            .Select(m => (Method: m, Trigger: m.GetParameters().Select(p => p.GetCustomAttribute<HttpTriggerAttribute>()).FirstOrDefault(t => t is not null)))
            .Where(f => f.Trigger is not null)
            // Literal routes before the dashboard's catch-all, as ASP.NET Core routing orders them.
            .OrderBy(f => f.Trigger!.Route!.Contains('*', StringComparison.Ordinal))
            .Select(f => (f.Method, f.Trigger!.Methods!, new TemplateMatcher(TemplateParser.Parse(f.Trigger.Route!), new RouteValueDictionary())))
            .ToArray();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage message, CancellationToken cancellationToken)
        {
            var context = new DefaultHttpContext { RequestServices = services };
            var request = context.Request;
            request.Method = message.Method.Method;
            request.Scheme = message.RequestUri!.Scheme;
            request.Host = new HostString(message.RequestUri.Authority);
            request.Path = Uri.UnescapeDataString(message.RequestUri.AbsolutePath);
            request.QueryString = new QueryString(message.RequestUri.Query.Length > 1 ? message.RequestUri.Query : null);
            if (message.Content is not null)
            {
                request.Body = new MemoryStream(await message.Content.ReadAsByteArrayAsync(cancellationToken));
                foreach (var header in message.Content.Headers) request.Headers[header.Key] = header.Value.ToArray();
            }
            var body = new MemoryStream();
            context.Response.Body = body;

            var values = new RouteValueDictionary();
            var function = Functions.FirstOrDefault(f => f.Verbs.Contains(request.Method, StringComparer.OrdinalIgnoreCase) && f.Route.TryMatch(request.Path, values = []));
            if (function.Method is null) return new HttpResponseMessage(HttpStatusCode.NotFound);
            object?[] arguments = function.Method.GetParameters().Select(p =>
                p.ParameterType == typeof(HttpRequest) ? request
                : p.ParameterType == typeof(DurableTaskClient) ? client
                : (object?)values[p.Name!]?.ToString()).ToArray();
            object? returned = function.Method.Invoke(function.Method.IsStatic ? null : functions, arguments);
            var result = returned is Task<IActionResult> task ? await task : (IActionResult)returned!;
            await result.ExecuteResultAsync(new ActionContext(context, new RouteData(values), new ActionDescriptor()));

            var response = new HttpResponseMessage((HttpStatusCode)context.Response.StatusCode) { Content = new ByteArrayContent(body.ToArray()) };
            foreach (var header in context.Response.Headers)
                if (!response.Headers.TryAddWithoutValidation(header.Key, header.Value.ToArray()))
                    response.Content.Headers.TryAddWithoutValidation(header.Key, header.Value.ToArray());
            return response;
        }
    }
}
