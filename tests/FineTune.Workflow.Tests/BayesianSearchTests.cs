using System.Globalization;
using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Testing;
using FineTune.Workflow.Jobs;

namespace FineTune.Workflow.Tests;

/// <summary>The "bayesian" sweep method (TPE): proposals from recorded results, replayable, better than random search.</summary>
public class BayesianSearchTests
{
    private const string Bowl = """
        "training.learningRate": { "min": 0.00001, "max": 1, "log": true },
        "training.weightDecay": { "min": 0, "max": 0.02 },
        "training.optimizer": ["sgd", "adam", "adamw"]
        """;

    private static JobSpec Read(string method, string parameters, int maxTrials, long seed = 1) => JobSpecReader.Read($$"""
        { "jobId": "sw", "dataset": { "location": "blob:datasets/pets/" },
          "sweep": { "method": "{{method}}", "maxTrials": {{maxTrials}}, "seed": {{seed}}, "parameters": { {{parameters}} } } }
        """, localPaths: false);

    /// <summary>
    /// A validation score as a sweep would see it: best at learning rate 10^-2.5, weight decay 0.004 and adam, falling
    /// off as a bowl in log learning rate and weight decay, with noise drawn per trial.
    /// </summary>
    private static double Truth(TrainingSpec t) =>
        -Math.Pow(Math.Log10(t.LearningRate) + 2.5, 2) - Math.Pow((t.WeightDecay - 0.004) / 0.006, 2) - (t.Optimizer == OptimizerKind.Adam ? 0 : 0.5);

    private static double Noisy(SweepTrial trial, long seed) => Truth(trial.Spec.Training) + 0.1 * new Random((int)seed * 1000 + trial.Index).NextDouble();

    /// <summary>The trials a sweep runs, proposed <paramref name="batch"/> at a time and each scored before the next batch.</summary>
    private static List<SweepTrial> Run(JobSpec spec, int batch, Func<SweepTrial, double?> score)
    {
        var trials = new List<SweepTrial>();
        var observed = new List<ObservedTrial>();
        while (SweepPlanner.Propose(spec, observed, batch) is { Count: > 0 } proposed)
        {
            trials.AddRange(proposed);
            observed.AddRange(proposed.Select(t => new ObservedTrial(t.Index, t.Parameters, score(t))));
        }
        return trials;
    }

    [Fact]
    public void FindsABetterValueThanRandomSearchWithTheSameTrials()
    {
        // Averaged over seeds, so the comparison is not one lucky draw (over 1-50: bayesian -0.16, random -0.39, better in 39).
        const int Seeds = 20;
        double bayesian = 0, random = 0;
        for (long seed = 1; seed <= Seeds; seed++)
        {
            bayesian += Run(Read("bayesian", Bowl, 40, seed), 1, t => Noisy(t, seed)).Max(t => Truth(t.Spec.Training)) / Seeds;
            random += SweepPlanner.Plan(Read("random", Bowl, 40, seed)).Max(t => Truth(t.Spec.Training)) / Seeds;
        }
        Assert.True(bayesian > random + 0.1, $"mean best over {Seeds} seeds: bayesian {bayesian:F3}, random {random:F3}");
    }

    [Fact]
    public void ProposalsAreReplayableSeededAndStayInTheirRanges()
    {
        const string parameters = """
            "training.learningRate": { "min": 0.0001, "max": 0.1, "log": true },
            "training.weightDecay": { "min": 0, "max": 0.01 },
            "training.epochs": { "min": 2, "max": 5 },
            "training.batchSize": { "min": 8, "max": 64, "log": true },
            "training.optimizer": ["sgd", "adam"],
            "training.labelSmoothing": [0, 0.1]
            """;
        // Scores from the values alone, a failed trial (null) among them: what a replay sees again.
        double? Score(SweepTrial t) => t.Index % 7 == 0 ? null : -Math.Abs(Math.Log10(t.Spec.Training.LearningRate) + 2) - t.Spec.Training.Epochs / 10.0;
        var trials = Run(Read("bayesian", parameters, 30), 3, Score);

        Assert.Equal(Enumerable.Range(1, 30), trials.Select(t => t.Index));
        Assert.Equal(["sw-t01", "sw-t02"], trials.Take(2).Select(t => t.JobId));
        Assert.Equal(trials.Select(t => SweepPlanner.Describe(t.Parameters)), Run(Read("bayesian", parameters, 30), 3, Score).Select(t => SweepPlanner.Describe(t.Parameters)));
        Assert.NotEqual(trials.Select(t => t.Spec.Training.LearningRate), Run(Read("bayesian", parameters, 30, seed: 2), 3, Score).Select(t => t.Spec.Training.LearningRate));
        Assert.Equal(30, trials.Select(t => SweepPlanner.Describe(t.Parameters)).Distinct().Count());
        Assert.All(trials, t => Assert.InRange(t.Spec.Training.LearningRate, 0.0001, 0.1));
        Assert.All(trials, t => Assert.InRange(t.Spec.Training.WeightDecay, 0, 0.01));
        Assert.All(trials, t => Assert.InRange(t.Spec.Training.Epochs, 2, 5));
        Assert.All(trials, t => Assert.InRange(t.Spec.Training.BatchSize, 8, 64));
        Assert.All(trials, t => Assert.True(t.Parameters["training.epochs"].TryGetInt32(out _) && t.Parameters["training.batchSize"].TryGetInt32(out _)));
        Assert.Equal([OptimizerKind.Sgd, OptimizerKind.Adam], trials.Select(t => t.Spec.Training.Optimizer).Distinct().Order());
        Assert.Equal([0, 0.1], trials.Select(t => t.Spec.Training.LabelSmoothing).Distinct().Order());
        // After the startup the model steers: the later trials sit closer to the best learning rate (10^-2) than the first ones.
        double Distance(IEnumerable<SweepTrial> some) => some.Average(t => Math.Abs(Math.Log10(t.Spec.Training.LearningRate) + 2));
        Assert.True(Distance(trials.Skip(20)) < Distance(trials.Take(7)), $"{Distance(trials.Skip(20))} vs {Distance(trials.Take(7))}");
        // The plan is the proposals with no results: the same ids, and the same prior draws for the startup.
        var plan = SweepPlanner.Plan(Read("bayesian", parameters, 30));
        Assert.Equal(trials.Select(t => t.JobId), plan.Select(t => t.JobId));
        Assert.Equal(trials.Take(7).Select(t => SweepPlanner.Describe(t.Parameters)), plan.Take(7).Select(t => SweepPlanner.Describe(t.Parameters)));
    }

    [Fact]
    public void ProposingSeveralAtOnceIsProposingOneAtATimeWithTheOthersRunning()
    {
        var spec = Read("bayesian", Bowl + """, "dataset.resize": ["crop", "pad"]""", 24);
        var scoredFirst = Run(spec, 1, t => Noisy(t, 1)).Take(12).Select(t => new ObservedTrial(t.Index, t.Parameters, Noisy(t, 1))).ToList();
        // Arrival order does not matter, and a failed trial counts as a trial without a score.
        scoredFirst.Reverse();
        scoredFirst[0] = scoredFirst[0] with { Score = null };

        var batch = SweepPlanner.Propose(spec, scoredFirst, 5);
        var single = new List<SweepTrial>();
        var observed = new List<ObservedTrial>(scoredFirst);
        for (int i = 0; i < 5; i++)
        {
            var next = Assert.Single(SweepPlanner.Propose(spec, observed, 1));
            single.Add(next);
            observed.Add(new ObservedTrial(next.Index, next.Parameters, null));
        }

        Assert.Equal(Enumerable.Range(13, 5), batch.Select(t => t.Index));
        Assert.Equal(single.Select(t => (t.JobId, SweepPlanner.Describe(t.Parameters), t.FeatureGroup)), batch.Select(t => (t.JobId, SweepPlanner.Describe(t.Parameters), t.FeatureGroup)));
        // Feature groups number the feature keys in index order, whichever call proposed the trial.
        var all = Run(spec, 5, t => Noisy(t, 1));
        var firstOfKey = all.Select(t => t.Spec.Dataset!.Resize).Distinct().ToList();
        Assert.Equal(all.Select(t => firstOfKey.IndexOf(t.Spec.Dataset!.Resize)), all.Select(t => t.FeatureGroup));
        Assert.Equal(2, firstOfKey.Count);
        Assert.Throws<ArgumentException>(() => SweepPlanner.Propose(spec, scoredFirst.Where(t => t.Index != 5).ToList(), 1));
    }

    [Fact]
    public void ASmallSpaceRunsEachValidCombinationOnce()
    {
        // Four combinations, one of them (nesterov with adam) not a valid job: grid and random refuse it, bayesian skips it.
        const string parameters = """ "training.optimizer": ["sgd", "adam"], "training.nesterov": [false, true] """;
        var spec = Read("bayesian", parameters, 10);
        var trials = Run(spec, 2, t => t.Index);

        Assert.Equal(3, trials.Count);
        Assert.Equal(3, trials.Select(t => SweepPlanner.Describe(t.Parameters)).Distinct().Count());
        Assert.DoesNotContain(trials, t => t.Spec.Training.Optimizer == OptimizerKind.Adam && t.Spec.Training.Nesterov);
        Assert.Equal(["sw-t1", "sw-t2", "sw-t3"], trials.Select(t => t.JobId));
        Assert.Throws<InvalidJobSpecException>(() => Read("random", parameters, 10));
        Assert.Contains(Assert.Throws<InvalidJobSpecException>(() => Read("bayesian", """ "training.optimizer": ["adam"], "training.nesterov": [true] """, 10)).Errors,
            e => e.Field == "sweep.parameters" && e.Reason.Contains("no combination"));
    }

    [Fact]
    public void GridAndRandomProposeTheNextTrialsOfTheirPlan()
    {
        foreach (var spec in new[] { Read("grid", """ "training.learningRate": [0.001, 0.01, 0.1], "dataset.resize": ["crop", "pad"] """, 6),
                                     Read("random", Bowl + """, "dataset.resize": ["crop", "pad"]""", 9) })
        {
            var plan = SweepPlanner.Plan(spec);
            // Scores do not change what grid and random run.
            var proposed = Run(spec, 4, t => -t.Index);
            Assert.Equal(plan.Select(t => (t.Index, t.JobId, SweepPlanner.Describe(t.Parameters), t.FeatureGroup)),
                proposed.Select(t => (t.Index, t.JobId, SweepPlanner.Describe(t.Parameters), t.FeatureGroup)));
        }
    }

    [Fact]
    public void RangesAreForRandomAndBayesianNotGrid()
    {
        const string range = """ "training.momentum": { "min": 0, "max": 0.5 } """;
        Assert.All(SweepPlanner.Plan(Read("bayesian", range, 3)), t => Assert.InRange(t.Spec.Training.Momentum, 0, 0.5));
        Assert.Contains(Assert.Throws<InvalidJobSpecException>(() => Read("grid", range, 3)).Errors,
            e => e.Field == "sweep.parameters.training.momentum" && e.Reason.Contains("\"random\" or \"bayesian\""));
    }

    /// <summary>The machine-independent exp, log and erfc that TPE's densities use, against Python's math module (the C library's).</summary>
    [Fact]
    public void PortableMathAgreesWithPython()
    {
        double[] points = [-700, -300, -20.5, -3, -1, -0.5, -1e-9, 0, 1e-12, 0.3, 0.6931, 1, 2.5, 7, 33.3, 300, 709];
        double[] positive = [5e-324, 1e-310, 1e-100, 1e-5, 0.1, 0.5, 0.7071, 1, 1.0000001, 1.5, 2, 10, 12345.678, 1e300];
        string Numbers(IEnumerable<double> values) => string.Join(",", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
        var python = ProcessRunner.Run("/usr/bin/python3", ["-c", $$"""
            import math, json
            print(json.dumps({"exp": [math.exp(x) for x in [{{Numbers(points)}}]], "log": [math.log(x) for x in [{{Numbers(positive)}}]],
                              "erfc": [math.erfc(x / 50) for x in [{{Numbers(points.Where(p => p > -300 && p < 300))}}]]}))
            """]);
        Assert.True(python.ExitCode == 0, python.Error);
        var reference = JsonDocument.Parse(python.Output).RootElement;

        foreach (var (x, expected) in points.Zip(reference.GetProperty("exp").EnumerateArray().Select(e => e.GetDouble())))
            Assert.True(Math.Abs(PortableMath.Exp(x) - expected) <= 4e-16 * expected, $"exp({x}) = {PortableMath.Exp(x):R}, Python {expected:R}");
        foreach (var (x, expected) in positive.Zip(reference.GetProperty("log").EnumerateArray().Select(e => e.GetDouble())))
            Assert.True(Math.Abs(PortableMath.Log(x) - expected) <= 4e-16 * Math.Max(1, Math.Abs(expected)), $"log({x}) = {PortableMath.Log(x):R}, Python {expected:R}");
        foreach (var (x, expected) in points.Where(p => p > -300 && p < 300).Zip(reference.GetProperty("erfc").EnumerateArray().Select(e => e.GetDouble())))
            Assert.True(Math.Abs(PortableMath.Erfc(x / 50) - expected) <= 1.2e-7 * expected, $"erfc({x / 50}) = {PortableMath.Erfc(x / 50):R}, Python {expected:R}");
    }
}
