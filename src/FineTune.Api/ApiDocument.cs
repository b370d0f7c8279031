using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.OpenApi;

namespace FineTune.Api;

/// <summary>The API's OpenAPI document, the same from both hosts.</summary>
public static class ApiDocument
{
    public const string Name = "v1";

    /// <summary>OpenAPI for <see cref="ApiEndpoints.MapFineTuneApi"/>'s endpoints, titled for the API rather than the host.</summary>
    public static IServiceCollection AddFineTuneOpenApi(this IServiceCollection services) =>
        services.AddOpenApi(Name, options =>
        {
            options.AddDocumentTransformer((document, _, _) =>
            {
                document.Info.Title = "FineTune API";
                document.Info.Description = "Fine-tune pretrained vision models: start runs, follow them, download their artifacts, classify images.";
                return Task.CompletedTask;
            });
            // The API's JSON leaves null members out, so a nullable member is never required (checked against real responses).
            options.AddSchemaTransformer((schema, context, _) =>
            {
                if (schema.Required is { Count: > 0 } required)
                {
                    foreach (var property in context.JsonTypeInfo.Properties.Where(p => p.IsGetNullable))
                        required.Remove(property.Name);
                }
                return Task.CompletedTask;
            });
        });

    private static readonly Lazy<Task<string>> Document = new(GenerateAsync);

    /// <summary>
    /// The document as JSON, generated once from the endpoints of an ASP.NET Core app that starts on a server that
    /// never listens: for a host without ASP.NET Core routing (the Functions app).
    /// </summary>
    public static Task<string> JsonAsync() => Document.Value;

    private static async Task<string> GenerateAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddFineTuneApi();
        // Registered so that handlers' client parameters describe as services, as in the hosts; never resolved here.
        builder.Services.AddSingleton<DurableTaskClient>(_ => throw new InvalidOperationException("the OpenAPI document's app runs no handlers"));
        builder.Services.AddFineTuneOpenApi();
        // Starting builds the routing that the document describes; nothing needs to be reachable.
        builder.Services.AddSingleton<IServer, SilentServer>();
        await using var app = builder.Build();
        app.MapFineTuneApi();
        await app.StartAsync();
        var document = await app.Services.GetRequiredKeyedService<IOpenApiDocumentProvider>(Name).GetOpenApiDocumentAsync();
        string json = await document.SerializeAsJsonAsync(OpenApiSpecVersion.OpenApi3_1);
        await app.StopAsync();
        return json;
    }

    private sealed class SilentServer : IServer
    {
        public IFeatureCollection Features { get; } = new FeatureCollection();

        public Task StartAsync<TContext>(IHttpApplication<TContext> application, CancellationToken cancellationToken) where TContext : notnull => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose()
        {
        }
    }
}
