using FineTune.Workflow.Jobs;

namespace FineTune.Workflow.Tests;

public class JobSpecReaderTests
{
    [Fact]
    public void MinimalSpecGetsTheSeedRecipe()
    {
        var spec = JobSpecReader.Read("""{ "dataset": { "location": "blob:datasets/pets.zip" } }""", localPaths: false);

        Assert.Equal("resnet18-cntk", spec.Model);
        Assert.Equal("bundled", spec.Weights.Source);
        Assert.Equal("head", spec.Freeze);
        Assert.Equal(("sgd", 0.001, 0.9), (spec.Training.Optimizer, spec.Training.LearningRate, spec.Training.Momentum));
        Assert.Matches("^ft-[0-9a-f]{12}$", spec.JobId);
        Assert.Equal(spec.JobId, JobSpecReader.Read("""{"dataset":{"location":"blob:datasets/pets.zip"}}""", false).JobId);
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

        var fields = error.Errors.Select(e => e.Field).ToList();
        Assert.Equal(["jobId", "model", "weights.source", "weights.sha256", "dataset.location", "dataset.validationFraction",
            "dataset.resize", "freeze", "device", "training.epochs", "training.batchSize", "training.optimizer",
            "training.learningRate", "training.schedule", "training.earlyStopping.patience", "training.earlyStopping.metric"], fields);
        Assert.Contains(error.Errors, e => e.Field == "model" && e.Reason.Contains("known: resnet18-cntk"));
        Assert.Contains(error.Errors, e => e.Field == "dataset.location" && e.Reason.Contains("blob:"));
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

    [Fact]
    public void UnknownFieldsAndWrongTypesNameTheField()
    {
        var unknown = Assert.Throws<InvalidJobSpecException>(() => JobSpecReader.Read("""{ "dataset": { "location": "x", "colour": 1 } }""", true));
        Assert.Equal(("dataset.colour", "unknown field"), (unknown.Errors[0].Field, unknown.Errors[0].Reason));
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
}
