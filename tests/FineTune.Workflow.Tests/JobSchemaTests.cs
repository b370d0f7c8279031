using System.Text.Json.Nodes;
using FineTune.Core.Training;
using FineTune.Workflow.Jobs;

namespace FineTune.Workflow.Tests;

/// <summary>The job schema: generated from the spec types, shipped as schemas/job.schema.json, and checked by an independent validator.</summary>
public sealed class JobSchemaTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("job-schema-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void TheShippedSchemaIsTheGeneratedOne()
    {
        string shipped = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, JobSchema.FileName));
        Assert.True(shipped == JobSchema.Text(),
            "schemas/job.schema.json is out of date: dotnet run --project src/FineTune.Cli -- schema > schemas/job.schema.json");
    }

    [Fact]
    public void TheSchemaKnowsTheChoicesDefaultsAndThatNoOtherFieldIsAllowed()
    {
        var schema = JobSchema.Generate();
        Assert.Equal(JobSchema.Dialect, (string?)schema["$schema"]);
        Assert.False((bool)schema["additionalProperties"]!);
        var training = schema["properties"]!["training"]!;
        Assert.Equal(Optimizers.Choices.All.Select(c => c.Name), training["properties"]!["optimizer"]!["enum"]!.AsArray().Select(n => (string)n!));
        Assert.Equal(0.001, (double)training["properties"]!["learningRate"]!["default"]!);
        Assert.False((bool)training["additionalProperties"]!);
    }

    [Fact]
    public void AJobFileMayNameItsSchemaWithoutChangingItsJobId()
    {
        var plain = JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" } }""", false);
        var named = JobSpecReader.Read("""{ "$schema": "./job.schema.json", "dataset": { "location": "blob:d/" } }""", false);
        Assert.Equal(plain.JobId, named.JobId);
    }

    private const string Validator = """
        import json, sys, jsonschema
        schema, job = (json.load(open(p)) for p in sys.argv[1:3])
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(job))
        print(len(errors), [e.message for e in errors])
        """;

    /// <summary>Debian's python3-jsonschema, an implementation of its own, accepts a good job file and rejects bad ones.</summary>
    [Fact]
    public void AnIndependentValidatorAcceptsGoodJobFilesAndRejectsBadOnes()
    {
        string schema = Path.Combine(_dir, JobSchema.FileName);
        File.WriteAllText(schema, JobSchema.Text());
        var cases = new (string Job, bool Valid)[]
        {
            ("""{ "$schema": "./job.schema.json", "model": "resnet50", "weights": { "source": "https://download.pytorch.org/models/resnet50-0676ba61.pth" }, "dataset": { "location": "photos", "resize": "pad" }, "freeze": "last:2", "training": { "epochs": 3, "optimizer": "adamw", "learningRate": 0.01, "earlyStopping": { "metric": "val_accuracy" } } }""", true),
            ("""{ "dataset": { "location": "photos" }, "training": { "optimizer": "lion" } }""", false),
            ("""{ "dataset": { "location": "photos" }, "training": { "epochs": "5" } }""", false),
            ("""{ "dataset": { "location": "photos" }, "freeze": "last:0" }""", false),
            ("""{ "dataset": { "location": "photos" }, "modle": "resnet50" }""", false),
        };
        foreach (var (job, valid) in cases)
        {
            string file = Path.Combine(_dir, "job.json");
            File.WriteAllText(file, job);
            var result = ProcessRunner.Run("/usr/bin/python3", ["-c", Validator, schema, file]);
            Assert.True(result.ExitCode == 0, result.Error);
            Assert.True(result.Output.StartsWith(valid ? "0 " : "1 ", StringComparison.Ordinal), $"{job}: {result.Output}");
            // The reader agrees with the schema.
            bool readable;
            try { JobSpecReader.Read(job, localPaths: true); readable = true; }
            catch (InvalidJobSpecException) { readable = false; }
            Assert.Equal(valid, readable);
        }
    }
}
