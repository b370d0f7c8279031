using Azure.Monitor.OpenTelemetry.Exporter;
using FineTune.Api;
using FineTune.Core.Runtime;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Services;
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Azure.Functions.Worker.OpenTelemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;

GlibcMalloc.LimitRetainedMemory();
var builder = FunctionsApplication.CreateBuilder(args);
builder.ConfigureFunctionsWebApplication();
builder.Services.AddFineTuneWorkflow();
builder.Logging.AddFineTuneLogFilters();
builder.Services.AddOptions<ArtifactStoreOptions>().BindConfiguration(ArtifactStoreOptions.SectionName);
builder.Services.AddOptions<WorkflowOptions>().BindConfiguration(WorkflowOptions.SectionName);
builder.Services.AddOptions<WeightsFetchOptions>().BindConfiguration(WeightsFetchOptions.SectionName);
builder.Services.AddFineTuneApi();
builder.Services.AddOptions<ApiOptions>().BindConfiguration(ApiOptions.SectionName);
// Logs (the per-epoch lines among them), traces and metrics (the workflow's meter among them) to Application Insights,
// at the connection string the Bicep sets; host.json's telemetryMode makes the host export the same way.
var telemetry = builder.Services.AddOpenTelemetry().UseFunctionsWorkerDefaults()
    .WithMetrics(metrics => metrics.AddMeter(WorkflowMetrics.MeterName));
if (!string.IsNullOrEmpty(builder.Configuration["APPLICATIONINSIGHTS_CONNECTION_STRING"])) telemetry.UseAzureMonitorExporter();
builder.Build().Run();
