using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Workflow.Jobs;

namespace FineTune.Workflow.Tests;

public class SweepPlannerTests
{
    private static JobSpec Read(string sweep, string extra = "") => JobSpecReader.Read($$"""
        { "jobId": "sw", "dataset": { "location": "blob:datasets/pets/" }, {{extra}} "sweep": {{sweep}} }
        """, localPaths: false);

    private static InvalidJobSpecException Invalid(string sweep, string extra = "") => Assert.Throws<InvalidJobSpecException>(() => Read(sweep, extra));

    [Fact]
    public void GridIsEveryCombinationLastKeyFastestWithItsOwnIds()
    {
        var spec = Read("""{ "parameters": { "training.momentum": [0.8, 0.9], "training.learningRate": [0.001, 0.01, 0.1] }, "maxTrials": 6 }""");

        var trials = SweepPlanner.Plan(spec);

        Assert.Equal(["sw-t1", "sw-t2", "sw-t3", "sw-t4", "sw-t5", "sw-t6"], trials.Select(t => t.JobId));
        Assert.Equal([(0.001, 0.8), (0.001, 0.9), (0.01, 0.8), (0.01, 0.9), (0.1, 0.8), (0.1, 0.9)],
            trials.Select(t => (t.Spec.Training.LearningRate, t.Spec.Training.Momentum)));
        Assert.All(trials, t => Assert.Equal((t.JobId, (SweepSpec?)null), (t.Spec.JobId, t.Spec.Sweep)));
        // Head trials see the same images through the same backbone: one feature pass for all.
        Assert.All(trials, t => Assert.Equal(0, t.FeatureGroup));
        // The sweep's metric picks each trial's best epoch.
        Assert.All(trials, t => Assert.Equal(StoppingMetric.ValidationAccuracy, t.Spec.StoppingMetric()));
    }

    [Fact]
    public void RandomSearchIsSeededAndStaysInItsRanges()
    {
        const string sweep = """
            { "method": "random", "maxTrials": 24, "seed": 3, "parameters": {
                "training.learningRate": { "min": 0.0001, "max": 0.1, "log": true },
                "training.weightDecay": { "min": 0, "max": 0.01 },
                "training.epochs": { "min": 2, "max": 4 },
                "training.optimizer": ["sgd", "adam"] } }
            """;
        var trials = SweepPlanner.Plan(Read(sweep));

        Assert.Equal(24, trials.Count);
        Assert.Equal(trials.Select(t => SweepPlanner.Describe(t.Parameters)), SweepPlanner.Plan(Read(sweep)).Select(t => SweepPlanner.Describe(t.Parameters)));
        Assert.NotEqual(trials.Select(t => t.Spec.Training.LearningRate), SweepPlanner.Plan(Read(sweep.Replace("\"seed\": 3", "\"seed\": 4"))).Select(t => t.Spec.Training.LearningRate));
        Assert.All(trials, t => Assert.InRange(t.Spec.Training.LearningRate, 0.0001, 0.1));
        Assert.All(trials, t => Assert.InRange(t.Spec.Training.WeightDecay, 0, 0.01));
        Assert.All(trials, t => Assert.InRange(t.Spec.Training.Epochs, 2, 4));
        Assert.Equal([2, 3, 4], trials.Select(t => t.Spec.Training.Epochs).Distinct().Order());
        Assert.Equal([OptimizerKind.Sgd, OptimizerKind.Adam], trials.Select(t => t.Spec.Training.Optimizer).Distinct().Order());
        // Log-uniform: about as many draws per decade, so most are far below the range's middle.
        Assert.InRange(trials.Count(t => t.Spec.Training.LearningRate < 0.01), 12, 22);
        Assert.Equal(JsonValueKind.Number, trials[0].Parameters["training.epochs"].ValueKind);
        Assert.True(trials[0].Parameters["training.epochs"].TryGetInt32(out _));
    }

    [Fact]
    public void RandomDrawsFromSmallListsAreNotRepeated()
    {
        var trials = SweepPlanner.Plan(Read("""{ "method": "random", "maxTrials": 10, "parameters": { "training.optimizer": ["sgd", "adam", "adamw"] } }"""));

        Assert.Equal(3, trials.Count);
        Assert.Equal(3, trials.Select(t => t.Spec.Training.Optimizer).Distinct().Count());
    }

    [Fact]
    public void WhatChangesTheFeaturesMakesItsOwnFeatureGroup()
    {
        var trials = SweepPlanner.Plan(Read("""{ "parameters": { "dataset.resize": ["crop", "pad"], "training.learningRate": [0.001, 0.01] } }"""));

        Assert.Equal([0, 0, 1, 1], trials.Select(t => t.FeatureGroup));
    }

    [Fact]
    public void EveryProblemIsAFieldErrorNamingTheSweptField()
    {
        var error = Invalid("""
            { "maxTrials": 0, "parallelism": 100, "earlyTermination": { "policy": "median", "graceEpochs": 0 },
              "parameters": { "training.lr": [0.1], "training.learningRate": [0.01, -1], "jobId": ["x"], "training.momentum": { "min": 0, "max": 0.5 } } }
            """);

        var fields = error.Errors.Select(e => e.Field).ToList();
        Assert.Contains("sweep.maxTrials", fields);
        Assert.Contains("sweep.parallelism", fields);
        Assert.Contains("sweep.earlyTermination.graceEpochs", fields);
        Assert.Contains(error.Errors, e => e.Field == "sweep.parameters.training.lr" && e.Reason.Contains("not a job-spec field"));
        Assert.Contains(error.Errors, e => e.Field == "sweep.parameters.training.learningRate" && e.Reason.StartsWith("-1: training.learningRate", StringComparison.Ordinal));
        Assert.Contains(error.Errors, e => e.Field == "sweep.parameters.jobId");
        Assert.Contains(error.Errors, e => e.Field == "sweep.parameters.training.momentum" && e.Reason.Contains("ranges are for"));
    }

    [Fact]
    public void BadShapesAndChoicesAreFieldErrors()
    {
        Assert.Contains(Invalid("""{ "method": "bayes", "parameters": { "seed": [1] } }""").Errors, e => e.Field == "sweep.method" && e.Reason.Contains("grid, random or bayesian"));
        Assert.Contains(Invalid("""{ "parameters": { "seed": 1 } }""").Errors, e => e.Field.StartsWith("sweep.parameters", StringComparison.Ordinal) && e.Reason.Contains("list of values"));
        Assert.Contains(Invalid("""{ "method": "random", "parameters": { "seed": { "min": 5, "max": 1 } } }""").Errors, e => e.Reason.Contains("min <= max"));
        Assert.Contains(Invalid("""{ "parameters": {} }""").Errors, e => e.Field == "sweep.parameters");
        Assert.Contains(Invalid("""{ "parameters": { "training.epochs": [1, 2, 3] }, "maxTrials": 2 }""").Errors,
            e => e.Field == "sweep.maxTrials" && e.Reason.Contains("3 combinations"));
        Assert.Contains(Invalid("""{ "parameters": { "training.epochs": [1] }, "metric": "val_loss" }""",
            """ "training": { "earlyStopping": { "metric": "val_accuracy" } }, """).Errors, e => e.Field == "sweep.metric");
        // Values valid alone that clash in a trial.
        var clash = Invalid("""{ "parameters": { "training.optimizer": ["sgd", "adam"], "training.nesterov": [false, true] } }""").Errors;
        Assert.True(clash.Any(e => e.Field == "sweep.parameters" && e.Reason.Contains("training.optimizer=adam") && e.Reason.Contains("nesterov")), string.Join(" | ", clash));
    }

    [Fact]
    public void ASpecWithoutASweepKeepsItsDerivedId()
    {
        const string json = """{ "dataset": { "location": "blob:datasets/pets.zip" } }""";
        Assert.Equal("ft-", JobSpecReader.Read(json, false).JobId![..3]);
        Assert.DoesNotContain("sweep", JsonSerializer.Serialize(JobSpecReader.Read(json, false), WireJson.Options), StringComparison.Ordinal);
    }
}
