using FineTune.Core.Runtime;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Services;
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

GlibcMalloc.LimitRetainedMemory();
var builder = FunctionsApplication.CreateBuilder(args);
builder.ConfigureFunctionsWebApplication();
builder.Services.AddFineTuneWorkflow();
builder.Services.AddOptions<ArtifactStoreOptions>().BindConfiguration(ArtifactStoreOptions.SectionName);
builder.Services.AddOptions<WorkflowOptions>().BindConfiguration(WorkflowOptions.SectionName);
builder.Services.AddOptions<WeightsFetchOptions>().BindConfiguration(WeightsFetchOptions.SectionName);
builder.Build().Run();
