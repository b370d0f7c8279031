using FineTune.Workflow;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.Azure.Functions.Worker;
using Microsoft.DurableTask;
using Microsoft.Extensions.DependencyInjection;

namespace FineTune.Functions;

/// <summary>
/// Binds the workflow's class-based orchestrator and activities to Durable Functions triggers: no logic
/// here, the classes in FineTune.Workflow do the work (and the command line and tests run them unchanged).
/// The wrappers and the activity context are what <c>Microsoft.DurableTask.Generators</c> would generate from
/// <c>[DurableTask]</c> classes, as durabletask-dotnet's samples do; that package is not on the NuGet feed this
/// project restores from (no version of it is served), so they are written here, one line per function.
/// </summary>
public sealed class DurableFunctions(IServiceProvider services)
{
    [Function(FineTuneOrchestrator.Name)]
    public static Task<FineTuneResult?> FineTune([OrchestrationTrigger] TaskOrchestrationContext context) =>
        new FineTuneOrchestrator().RunAsync(context, context.GetInput<FineTuneJob>()!);

    [Function(SweepOrchestrator.Name)]
    public static Task<FineTuneResult?> Sweep([OrchestrationTrigger] TaskOrchestrationContext context) =>
        new SweepOrchestrator().RunAsync(context, context.GetInput<FineTuneJob>()!);

    [Function(TrialOrchestrator.Name)]
    public static Task<TrialOutcome> Trial([OrchestrationTrigger] TaskOrchestrationContext context) =>
        new TrialOrchestrator().RunAsync(context, context.GetInput<TrialRequest>()!);

    [Function(ActivityNames.FetchPretrainedWeights)]
    public Task<WeightsRef> FetchPretrainedWeights([ActivityTrigger] FineTuneJob input, FunctionContext context) =>
        Run<FetchPretrainedWeights, FineTuneJob, WeightsRef>(input, context);

    [Function(ActivityNames.PrepareModel)]
    public Task<PreparedSummary> PrepareModel([ActivityTrigger] PrepareRequest input, FunctionContext context) =>
        Run<PrepareModel, PrepareRequest, PreparedSummary>(input, context);

    [Function(ActivityNames.ComputeFeatureShard)]
    public Task<ComputedFeatureShard> ComputeFeatureShard([ActivityTrigger] FeatureShardRequest input, FunctionContext context) =>
        Run<ComputeFeatureShard, FeatureShardRequest, ComputedFeatureShard>(input, context);

    [Function(ActivityNames.TrainChunk)]
    public Task<TrainResult> TrainChunk([ActivityTrigger] TrainRequest input, FunctionContext context) =>
        Run<TrainChunk, TrainRequest, TrainResult>(input, context);

    [Function(ActivityNames.Evaluate)]
    public Task<EvaluationSummary> Evaluate([ActivityTrigger] ModelRequest input, FunctionContext context) =>
        Run<Evaluate, ModelRequest, EvaluationSummary>(input, context);

    [Function(ActivityNames.Publish)]
    public Task<PublishedModel> Publish([ActivityTrigger] PublishRequest input, FunctionContext context) =>
        Run<Publish, PublishRequest, PublishedModel>(input, context);

    [Function(ActivityNames.WriteSweepReport)]
    public Task<SweepSummary> WriteSweepReport([ActivityTrigger] SweepReportRequest input, FunctionContext context) =>
        Run<WriteSweepReport, SweepReportRequest, SweepSummary>(input, context);

    [Function(ActivityNames.ReleaseRunFiles)]
    public Task<int> ReleaseRunFiles([ActivityTrigger] string[] input, FunctionContext context) =>
        Run<ReleaseRunFiles, string[], int>(input, context);

    [Function(ActivityNames.AdmitRun)]
    public Task<Admission> AdmitRun([ActivityTrigger] FineTuneJob input, FunctionContext context) =>
        Run<AdmitRun, FineTuneJob, Admission>(input, context);

    [Function(ActivityNames.LeaveRun)]
    public Task<bool> LeaveRun([ActivityTrigger] string input, FunctionContext context) =>
        Run<LeaveRun, string, bool>(input, context);

    [Function(ActivityNames.TrainStackedTrials)]
    public Task<StackResult> TrainStackedTrials([ActivityTrigger] StackRequest input, FunctionContext context) =>
        Run<TrainStackedTrials, StackRequest, StackResult>(input, context);

    [Function(ActivityNames.SaveTrialCheckpoint)]
    public Task<long> SaveTrialCheckpoint([ActivityTrigger] TrialCheckpointRequest input, FunctionContext context) =>
        Run<SaveTrialCheckpoint, TrialCheckpointRequest, long>(input, context);

    private Task<TOutput> Run<TActivity, TInput, TOutput>(TInput input, FunctionContext context)
        where TActivity : TaskActivity<TInput, TOutput> =>
        ActivatorUtilities.CreateInstance<TActivity>(services).RunAsync(
            new FunctionActivityContext(WorkflowServices.Activities.Single(a => a.Type == typeof(TActivity)).Name, context), input);

    /// <summary>The activity context of a Durable Functions activity invocation.</summary>
    private sealed class FunctionActivityContext(string name, FunctionContext context) : TaskActivityContext
    {
        public override TaskName Name => name;
        public override string InstanceId =>
            context.BindingContext.BindingData.TryGetValue("instanceId", out var id) ? id?.ToString() ?? "" : "";
    }
}
