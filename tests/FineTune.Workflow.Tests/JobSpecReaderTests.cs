using System.Globalization;
using System.Text.Json;
using FineTune.Core;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using Microsoft.DurableTask;
using Xunit.Abstractions;

namespace FineTune.Workflow.Tests;

public class JobSpecReaderTests(ITestOutputHelper log)
{
    [Fact]
    public void MinimalSpecGetsTheSeedRecipe()
    {
        var spec = JobSpecReader.Read("""{ "dataset": { "location": "blob:datasets/pets.zip" } }""", localPaths: false);

        Assert.Equal("resnet18-cntk", spec.Model);
        Assert.Equal("bundled", spec.Weights.Source);
        Assert.Equal(FreezeMode.Head, spec.Freeze);
        Assert.Equal((OptimizerKind.Sgd, 0.001, 0.9), (spec.Training.Optimizer, spec.Training.LearningRate, spec.Training.Momentum));
        Assert.Matches("^ft-[0-9a-f]{12}$", spec.JobId);
        Assert.Equal(spec.JobId, JobSpecReader.Read("""{"dataset":{"location":"blob:datasets/pets.zip"}}""", false).JobId);
    }

    [Theory]
    [InlineData("mobilenet_v2.pets-1", true)]
    [InlineData("a", true)]
    [InlineData("ft-0123456789ab", true)]
    [InlineData("_hidden", false)]
    [InlineData(".finetune", false)]
    [InlineData("run.", false)]
    [InlineData("..", false)]
    [InlineData("a/b", false)]
    [InlineData("a:r1", false)]
    [InlineData("Pets", false)]
    [InlineData("a b", false)]
    public void JobIdsAreWhatPeopleTypeWhereSafe(string jobId, bool valid)
    {
        string json = $$"""{ "jobId": "{{jobId}}", "dataset": { "location": "blob:d/" } }""";
        if (valid) Assert.Equal(jobId, JobSpecReader.Read(json, false).JobId);
        else Assert.Contains(new FieldError("jobId", ArtifactNames.JobIdRule), Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read(json, false)).Errors);
        // 63 characters at most, whatever they are.
        if (valid) Assert.False(ArtifactNames.IsValidJobId(jobId + new string('x', 64 - jobId.Length)));
    }

    [Fact]
    public void EveryBadFieldIsReportedWithItsPathAndReason()
    {
        var error = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""
            {
              "jobId": "Bad_Id",
              "model": "resnet19",
              "weights": { "source": "http://example.com/w.pth", "sha256": "xyz" },
              "dataset": { "location": "/data/local", "validationFraction": 1.5, "resize": "stretch" },
              "freeze": "last:0",
              "device": "tpu",
              "training": { "epochs": 0, "batchSize": 0, "optimizer": "lion", "learningRate": -1, "schedule": "linear",
                            "earlyStopping": { "patience": 0, "metric": "f1" } }
            }
            """, localPaths: false));

        // Choices the serializer rejects come first, in document order, then the other fields' checks.
        var fields = error.Errors.Select(e => e.Field).ToList();
        Assert.Equal(["dataset.resize", "freeze", "device", "training.optimizer", "training.schedule", "training.earlyStopping.metric",
            "jobId", "model", "weights.source", "weights.sha256", "dataset.location", "dataset.validationFraction",
            "training.epochs", "training.batchSize", "training.learningRate", "training.earlyStopping.patience"], fields);
        Assert.Contains(new FieldError("training.optimizer", "must be sgd, adam or adamw"), error.Errors);
        Assert.Contains(new FieldError("training.schedule", "must be constant, step or cosine"), error.Errors);
        Assert.Contains(new FieldError("training.earlyStopping.metric", "must be val_loss or val_accuracy"), error.Errors);
        Assert.Contains(new FieldError("dataset.resize", "must be crop or pad"), error.Errors);
        Assert.Contains(new FieldError("device", "must be auto, cpu or cuda"), error.Errors);
        Assert.Contains(error.Errors, e => e.Field == "freeze" && e.Reason.Contains("'last:0' is not head, last:N (N >= 1) or full"));
        Assert.Contains(error.Errors, e => e.Field == "model" && e.Reason.Contains("known: resnet18-cntk"));
        Assert.Contains(error.Errors, e => e.Field == "dataset.location" && e.Reason.Contains("blob:"));
    }

    [Fact]
    public void AugmentationIsReadByTimmsNamesAndEachBadValueNamesItsField()
    {
        var spec = JobSpecReader.Read("""
            { "dataset": { "location": "blob:d/" }, "training": { "labelSmoothing": 0.1, "augmentation":
              { "hflip": 0.5, "autoAugment": "rand-m9-mstd0.5", "reprob": 0.25, "remode": "const", "mixup": 0.8, "cutmix": 1.0,
                "scale": [0.25, 1], "ratio": [0.5, 2] } } }
            """, false);
        var augmentation = spec.ToRecipe("w").Training.Augmentation!;
        Assert.Equal(new Augmentation(AutoAugment: new RandAugment(9, 2, 0.5), EraseProbability: 0.25, EraseMode: ErasingMode.Const,
            MixupAlpha: 0.8, CutmixAlpha: 1.0, MinScale: 0.25, MinRatio: 0.5, MaxRatio: 2), augmentation);
        Assert.False(spec.ToRecipe("w").MayCacheFeatures);
        Assert.Equal(new Augmentation(), JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "training": { "augmentation": {} } }""", false)
            .ToRecipe("w").Training.Augmentation);

        var errors = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""
            { "dataset": { "location": "blob:d/" }, "training": { "augmentation":
              { "hflip": 1.5, "autoAugment": "rand-m12", "colorJitter": 1.4, "reprob": -1, "mixup": -0.1, "cutmix": 101,
                "mixupProb": 2, "mixupSwitchProb": -1, "scale": [0.5, 0.2], "ratio": [0.75] } } }
            """, false)).Errors.Select(e => e.Field).ToHashSet();
        string[] fields = ["hflip", "autoAugment", "colorJitter", "reprob", "mixup", "cutmix", "mixupProb", "mixupSwitchProb", "scale", "ratio"];
        Assert.Equal(fields.Select(f => "training.augmentation." + f).ToHashSet(), errors);
        Assert.Contains("training.augmentation.remode", Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read(
            """{ "dataset": { "location": "blob:d/" }, "training": { "augmentation": { "remode": "noise" } } }""", false)).Errors.Select(e => e.Field));
        Assert.Contains(new FieldError("training.augmentation.scale", "must be a list of numbers"), Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read(
            """{ "dataset": { "location": "blob:d/" }, "training": { "augmentation": { "scale": "big" } } }""", false)).Errors);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5001)]
    public void AChunkIsBoundedSoACancelOrRetryNeverWaitsOnHoursOfSteps(int maxStepsPerChunk)
    {
        var error = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read(
            $$"""{ "dataset": { "location": "blob:d/" }, "training": { "maxStepsPerChunk": {{maxStepsPerChunk}} } }""", localPaths: false));
        Assert.Equal([new FieldError("training.maxStepsPerChunk", "must be 1-5000")], error.Errors);
    }

    [Fact]
    public void WeightsMayBeNamedByTorchvisionsNamesWhereTheFamilyHasThem()
    {
        static JobSpec Read(string model, string source) =>
            JobSpecReader.Read($$"""{ "model": "{{model}}", "weights": { "source": "{{source}}" }, "dataset": { "location": "blob:d/" } }""", false);

        Assert.Equal("torchvision", Read("resnet50", "torchvision").Weights.Source);
        Assert.Equal("IMAGENET1K_V2", Read("resnet50", "IMAGENET1K_V2").Weights.Source);
        var v2 = Assert.Single(Assert.Throws<InvalidJobSpecException>(() => Read("resnet18", "IMAGENET1K_V2")).Errors);
        Assert.Equal(new FieldError("weights.source", "resnet18 has no torchvision weights named 'IMAGENET1K_V2'; it has torchvision, DEFAULT or IMAGENET1K_V1"), v2);
        var bundled = Assert.Single(Assert.Throws<InvalidJobSpecException>(() => Read("resnet50", "bundled")).Errors);
        Assert.Contains("give 'torchvision', blob:NAME or an https URL", bundled.Reason);
        Assert.Contains("its own are 'bundled'", Assert.Single(Assert.Throws<InvalidJobSpecException>(() => Read("resnet18-cntk", "torchvision")).Errors).Reason);
    }

    [Fact]
    public void TestFractionIsInRangeAndLeavesImagesToTrainOn()
    {
        static IReadOnlyList<FieldError> Errors(string dataset) => Assert.Throws<InvalidJobSpecException>(() =>
            JobSpecReader.Read($$"""{ "dataset": { "location": "blob:d/", {{dataset}} } }""", false)).Errors;

        Assert.Equal(new FieldError("dataset.testFraction", "must be in [0, 1)"), Assert.Single(Errors("\"testFraction\": -0.1")));
        var sum = Assert.Single(Errors("\"validationFraction\": 0.5, \"testFraction\": 0.5"));
        Assert.Equal("dataset.testFraction", sum.Field);
        Assert.Contains("validationFraction + testFraction must be below 1", sum.Reason);
        Assert.Equal("dataset.validationFraction", Assert.Single(Errors("\"validationFraction\": 1.5, \"testFraction\": 0.5")).Field);
        Assert.Equal(0.25, JobSpecReader.Read("""{ "dataset": { "location": "blob:d/", "testFraction": 0.25 } }""", false).Dataset.TestFraction);
    }

    [Fact]
    public void ATestFractionOfZeroKeepsTheDerivedJobId()
    {
        var without = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" } }""", false);
        var zero = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/", "testFraction": 0 } }""", false);
        var some = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/", "testFraction": 0.1 } }""", false);
        Assert.Equal(without.JobId, zero.JobId);
        Assert.NotEqual(without.JobId, some.JobId);
    }

    /// <summary>On unless false; left out of the JSON when not given, so earlier specs keep their job ids; asked for where it cannot apply, an error.</summary>
    [Fact]
    public void TheConvexHeadIsOnByDefaultKeepsDerivedJobIdsAndIsRefusedWhereItCannotApply()
    {
        static JobSpec Read(string training, string freeze = "head") =>
            JobSpecReader.Read($$"""{ "dataset": { "location": "blob:d/" }, "freeze": "{{freeze}}", "training": { {{training}} } }""", false);

        var without = Read("");
        Assert.True(without.Training.SolvesConvexHead);
        Assert.True(without.ToRecipe("w").Training.ConvexHead);
        Assert.DoesNotContain("convexHead", JsonSerializer.Serialize(without, WireJson.Options));
        Assert.Equal(without.JobId, JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" } }""", false).JobId);
        var off = Read("\"convexHead\": false");
        Assert.False(off.ToRecipe("w").Training.ConvexHead);
        Assert.NotEqual(without.JobId, off.JobId);
        Assert.True(Read("\"convexHead\": true").ToRecipe("w").Training.ConvexHead);
        foreach (var (training, freeze) in new[] { ("\"convexHead\": true", "last:1"), ("\"convexHead\": true, \"featureCache\": false", "head"),
            ("\"convexHead\": true, \"augmentation\": { \"hflip\": 0.5 }", "head") })
        {
            var error = Assert.Single(Assert.Throws<InvalidJobSpecException>(() => Read(training, freeze)).Errors);
            Assert.Equal("training.convexHead", error.Field);
        }
    }

    [Fact]
    public void ChoicesKeepTheirNamesAndTheDerivedJobIds()
    {
        // Pinned from before choices were typed: specs posted then name the same runs now. Their epochs were the
        // default then (5); a spec that leaves them out now means the new default, another job, so they are stated.
        Assert.Equal("ft-f4c27f3f9241", JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "training": { "epochs": 5 } }""", false).JobId);
        var spec = JobSpecReader.Read("""
            { "dataset": { "location": "blob:d/", "resize": "pad" }, "freeze": "last:2", "device": "cpu",
              "training": { "epochs": 5, "optimizer": "adamw", "schedule": "cosine", "earlyStopping": { "metric": "val_accuracy" } } }
            """, false);
        Assert.Equal("ft-71832720dd9e", spec.JobId);
        Assert.Equal((ResizeMode.Pad, FreezeMode.Last(2), DeviceKind.Cpu), (spec.Dataset.Resize, spec.Freeze, spec.Device));
        Assert.Equal((OptimizerKind.AdamW, ScheduleKind.Cosine, StoppingMetric.ValidationAccuracy),
            (spec.Training.Optimizer, spec.Training.Schedule, spec.StoppingMetric()));

        var json = JsonSerializer.SerializeToElement(spec, WireJson.Options);
        Assert.Equal(("pad", "last:2", "cpu"), (json.GetProperty("dataset").GetProperty("resize").GetString(),
            json.GetProperty("freeze").GetString(), json.GetProperty("device").GetString()));
        Assert.Equal("adamw", json.GetProperty("training").GetProperty("optimizer").GetString());
        Assert.Equal(spec, JobSpecReader.Read(json.GetRawText(), false));
    }

    [Fact]
    public void ANullChoiceIsAFieldError()
    {
        var error = Assert.Throws<InvalidJobSpecException>(() =>
            JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "training": { "optimizer": null } }""", false));
        Assert.Equal(new FieldError("training.optimizer", "must be sgd, adam or adamw"), Assert.Single(error.Errors));
    }

    [Fact]
    public void EveryBadInputExceptionIsOneBadInputForTheRetryPolicy()
    {
        // The orchestrator's retry policy asks IsCausedBy<BadInputException>: the failure's type is loaded by name, base types match.
        Exception[] bad = [new InvalidJobSpecException([new FieldError("model", "unknown")]), new InvalidDatasetException("empty"),
            new Core.Weights.WeightsSourceException("404"), new DeviceUnavailableException("no cuda")];
        Assert.All(bad, e => Assert.True(TaskFailureDetails.FromException(e).IsCausedBy<BadInputException>(), e.GetType().Name));
        Assert.False(TaskFailureDetails.FromException(new IOException("disk")).IsCausedBy<BadInputException>());
    }

    [Fact]
    public void PublishOnnxIsReadAndLeftOutOfTheDerivedJobIdWhenAbsent()
    {
        var without = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" } }""", false);
        Assert.Null(without.Publish);
        var onnx = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "publish": { "onnx": true } }""", false);
        Assert.True(onnx.Publish!.Onnx);
        Assert.NotEqual(without.JobId, onnx.JobId);
        var unknown = Assert.Throws<InvalidJobSpecException>(() =>
            JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "publish": { "tflite": true } }""", false));
        Assert.Equal(("publish.tflite", "unknown field"), (unknown.Errors[0].Field, unknown.Errors[0].Reason));
    }

    [Fact]
    public void UnknownFieldsAndWrongTypesNameTheField()
    {
        var unknown = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""{ "dataset": { "location": "x", "colour": 1 } }""", true));
        Assert.Equal(("dataset.colour", "unknown field"), (unknown.Errors[0].Field, unknown.Errors[0].Reason));
        var two = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""{ "colour": 1, "dataset": { "location": "x", "size": 2 } }""", true));
        Assert.Equal(["colour", "dataset.size"], two.Errors.Select(e => e.Field));
        var twice = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""{ "model": "a", "model": "b", "device": "tpu" }""", true));
        Assert.Equal(new FieldError("device", "must be auto, cpu or cuda"), Assert.Single(twice.Errors));
        var wrongType = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""{ "training": { "epochs": "five" } }""", true));
        Assert.Equal("training.epochs", wrongType.Errors[0].Field);
        var notJson = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("{ nope", true));
        Assert.Single(notJson.Errors);
    }

    [Fact]
    public void LocalPathsAreForTheCommandLineOnly()
    {
        const string json = """{ "weights": { "source": "/models/r18.pth" }, "model": "resnet18", "dataset": { "location": "/data/pets" } }""";
        Assert.Equal("/data/pets", JobSpecReader.Read(json, localPaths: true).Dataset.Location);
        var error = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read(json, localPaths: false));
        Assert.Equal(["weights.source", "dataset.location"], error.Errors.Select(e => e.Field));
    }

    [Fact]
    public void BundledWeightsNeedAFamilyThatHasThem()
    {
        var error = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""{ "model": "vgg11", "dataset": { "location": "blob:d/" } }""", false));
        Assert.Contains("vgg11 has no bundled weights", error.Errors.Single().Reason);
    }

    /// <summary>
    /// Issue 23: 64k unknown fields (693 KB) cost 93 s of CPU when every one was dropped by a parse of its own. One walk
    /// drops them all; the refusal lists the first <see cref="JobSpecReader.MaxListedErrors"/> and counts the rest.
    /// </summary>
    [Fact]
    public void SixtyFourThousandUnknownFieldsAreRefusedInOnePassWithTheListCapped()
    {
        const int fields = 65_536;
        var json = new System.Text.StringBuilder("""{ "dataset": { "location": "blob:d/", "extra": 1 }, "training": { "epochs": "five" }""");
        for (int i = 0; i < fields; i++) json.Append(CultureInfo.InvariantCulture, $", \"f{i}\": 1");
        json.Append('}');
        // Warmed up on a small spec first, so the figure is the parse and not the serializer's first use.
        Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" }, "f": 1 }""", localPaths: false));
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var error = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read(json.ToString(), localPaths: false));

        log.WriteLine($"{json.Length / 1024} KB, {fields} unknown fields: refused in {clock.Elapsed.TotalMilliseconds:F0} ms (was 93 s)");
        Assert.Equal(JobSpecReader.MaxListedErrors + 1, error.Errors.Count);
        Assert.Equal(new FieldError("dataset.extra", "unknown field"), error.Errors[0]);
        Assert.Equal(new FieldError("f0", "unknown field"), error.Errors[1]);
        // The wrong type, found after the unknown fields are dropped, is counted among the rest.
        Assert.Equal(new FieldError("$", $"and {fields + 2 - JobSpecReader.MaxListedErrors} more errors"), error.Errors[^1]);
        Assert.True(error.Message.Length < 10_000, $"{error.Message.Length} characters");
    }

    [Fact]
    public void UnknownFieldsAtEveryDepthAreNamedByTheirPath()
    {
        var error = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""
            { "dataset": { "location": "blob:d/" }, "training": { "earlyStopping": { "patiense": 2 } },
              "sweep": { "parameters": { "training.learningRate": { "values": [0.1, 0.01] } }, "earlyTermination": { "grace": 1 }, "shape": 2 } }
            """, localPaths: false));
        Assert.Equal(["training.earlyStopping.patiense", "sweep.earlyTermination.grace", "sweep.shape"], error.Errors.Select(e => e.Field).Take(3));
    }
}
