using FineTune.Core.Engine;
using FineTune.Core.Models;
using FineTune.Workflow.Services;

namespace FineTune.Workflow.Jobs;

/// <summary>A job's estimated peak memory (<see cref="PeakMemory"/>), and the check that refuses at submit a job this worker cannot hold.</summary>
public static class JobMemory
{
    public static MemoryEstimate Estimate(JobSpec spec, WorkflowOptions options)
    {
        var t = spec.Training;
        // The recipe decides whether a cache applies; under last:N the trainable stages' activations are counted as if they
        // ran on images (the frozen ones keep none for the backward pass): an upper bound.
        var recipe = spec.ToRecipe(weightsPath: "");
        bool featureCache = recipe.MayCacheFeatures && spec.Freeze == FreezeMode.Head;
        // At the input size of the weights it starts from (vit_h_14's DEFAULT: 518 px).
        var estimate = PeakMemory.Estimate(recipe.ModelFamily, spec.Freeze, t.BatchSize, t.Optimizer, t.Momentum, featureCache);
        // The scan keeps decoded images for a feature pass, and a run on images keeps those it scores (its training images
        // too without augmentation): up to the worker's budget for them, which concurrent runs each hold.
        return estimate with { DecodedImages = Math.Max(0, options.DecodedImagesBytes) };
    }

    /// <summary>
    /// Errors for a valid spec whose run (or a sweep's largest trial) is estimated past this worker's memory budget; none
    /// when it fits. Runs that fit alone but not together queue for a slot (<see cref="RunSlots"/>).
    /// </summary>
    public static IReadOnlyList<FieldError> Check(JobSpec spec, WorkflowOptions options)
    {
        long budget = MemoryBudgetBytes(options);
        string budgetText = $"this worker's memory budget of {budget >> 20} MB (Workflow:MemoryBudgetMB)";
        if (spec.Sweep is null)
        {
            var estimate = Estimate(spec, options);
            return estimate.TotalBytes <= budget ? [] :
                [new FieldError("training.batchSize", $"{spec.Model} with freeze {spec.Freeze} and batch size {spec.Training.BatchSize} needs an estimated {estimate}, over {budgetText}: use a smaller batch, freeze more or a smaller model")];
        }
        var largest = SweepPlanner.Plan(spec).Select(t => (t.Spec, Estimate: Estimate(t.Spec, options))).MaxBy(t => t.Estimate.TotalBytes);
        return largest.Estimate.TotalBytes <= budget ? [] :
            [new FieldError("training.batchSize", $"the sweep's largest trial ({largest.Spec.Model}, freeze {largest.Spec.Freeze}, batch size {largest.Spec.Training.BatchSize}) needs an estimated {largest.Estimate}, over {budgetText}")];
    }

    /// <summary>Configured, or three quarters of the memory this process may use (its container's limit included).</summary>
    public static long MemoryBudgetBytes(WorkflowOptions options) =>
        options.MemoryBudgetMB is { } megabytes ? megabytes << 20 : GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4 * 3;
}
