using System.CommandLine;
using System.Text.Json.Nodes;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;
using FineTune.Workflow.Jobs;

namespace FineTune.Cli.Tests;

/// <summary>The command line as a user types it: flags for the common fields, help with defaults, exit 2 naming what is wrong.</summary>
public sealed class CommandLineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-line-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int ExitCode, string Output, string Error)> Run(params string[] args)
    {
        var (output, error) = (new StringWriter(), new StringWriter());
        int code = await FineTuneCommand.RunAsync(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task AValueThatDoesNotParseExitsTwoNamingTheOption()
    {
        var (code, _, error) = await Run("train", "--dataset", _dir, "--epochs", "abc", "--lr", "fast", "--optimizer", "lion");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Contains("--epochs: 'abc' is not a whole number", error);
        Assert.Contains("--lr: 'fast' is not a number", error);
        Assert.Contains($"--optimizer: 'lion' is not {Optimizers.Choices.Allowed}", error);
        Assert.DoesNotContain("System.", error);
    }

    [Fact]
    public async Task AnUnknownFlagOrAFolderIsNeverTakenForTheJobFile()
    {
        var flag = await Run("train", "--dataset", _dir, "--learning-rate");
        Assert.Equal(ExitCodes.BadInput, flag.ExitCode);
        Assert.Contains("unknown option '--learning-rate'", flag.Error);

        var folder = await Run("train", _dir);
        Assert.Equal(ExitCodes.BadInput, folder.ExitCode);
        Assert.Contains($"'{_dir}' is a folder, not a job file", folder.Error);
    }

    [Fact]
    public async Task EveryFlagSetsItsJobSpecFieldAndATypedValueOverridesTheJobFile()
    {
        var parsed = FineTuneCommand.Create(TextWriter.Null, TextWriter.Null).Parse(
            ["train", "--dataset", _dir, "--lr", "0.01", "--optimizer", "adamw", "--momentum", "0.5", "--weight-decay", "0.05",
             "--schedule", "cosine", "--seed", "7", "--device", "cpu", "--val-fraction", "0.3", "--test-fraction", "0.1", "--label-smoothing", "0.2"]);
        Assert.Empty(parsed.Errors);
        var job = JsonNode.Parse("""{ "training": { "learningRate": 0.5, "epochs": 9 }, "freeze": "full" }""")!.AsObject();
        TrainCommand.ApplyFlags(parsed, job);
        var spec = JobSpecReader.Read(job.ToJsonString(), localPaths: true);

        Assert.Equal((0.01, OptimizerKind.AdamW, 0.5, 0.05, ScheduleKind.Cosine, 0.2),
            (spec.Training.LearningRate, spec.Training.Optimizer, spec.Training.Momentum, spec.Training.WeightDecay, spec.Training.Schedule, spec.Training.LabelSmoothing));
        Assert.Equal((7L, DeviceKind.Cpu, 0.3, 0.1), (spec.Seed, spec.Device, spec.Dataset.ValidationFraction, spec.Dataset.TestFraction));
        // Flags left out keep the job file's values, not the defaults their help shows.
        Assert.Equal((9, FreezeMode.Full), (spec.Training.Epochs, spec.Freeze));
        Assert.Equal(_dir, spec.Dataset.Location);
    }

    [Fact]
    public async Task AFieldErrorFromAFlagNamesTheFlag()
    {
        var (code, _, error) = await Run("train", "--dataset", _dir, "--val-fraction", "1.5", "--label-smoothing", "1");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Contains("--val-fraction (dataset.validationFraction): must be in [0, 1)", error);
        Assert.Contains("--label-smoothing (training.labelSmoothing): must be in [0, 1)", error);
    }

    [Fact]
    public async Task EveryJobFileMistakeIsReportedAtOnce()
    {
        string file = Path.Combine(_dir, "job.json");
        File.WriteAllText(file, """{ "modle": "x", "training": { "epochs": "five", "lr": 0.1 }, "seed": 1.5, "freeze": "some" }""");
        var (code, _, error) = await Run("train", file, "--dataset", _dir);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Contains("job spec: modle: unknown field", error);
        Assert.Contains("job spec: training.epochs: must be a whole number", error);
        Assert.Contains("job spec: training.lr: unknown field", error);
        Assert.Contains("job spec: seed: must be a whole number", error);
        Assert.Contains("job spec: freeze: freeze mode 'some' is not", error);
    }

    [Fact]
    public void EveryOptionAndArgumentHasADescriptionAndSaysItsDefault()
    {
        var root = FineTuneCommand.Create(TextWriter.Null, TextWriter.Null);
        foreach (var command in root.Subcommands)
        {
            foreach (var option in command.Options.Where(o => o is not System.CommandLine.Help.HelpOption))
            {
                Assert.False(string.IsNullOrWhiteSpace(option.Description), $"{command.Name} {option.Name} has no description");
                Assert.True(option.HasDefaultValue || option.Required || option.Description!.Contains("default", StringComparison.OrdinalIgnoreCase)
                    || option.Description.Contains("Required unless", StringComparison.Ordinal), $"{command.Name} {option.Name} does not say its default");
            }
            foreach (var argument in command.Arguments)
                Assert.False(string.IsNullOrWhiteSpace(argument.Description), $"{command.Name} <{argument.Name}> has no description");
        }
    }

    [Fact]
    public async Task TrainHelpShowsEachDefaultFromTheJobSpec()
    {
        var (code, help, _) = await Run("train", "--help");
        Assert.Equal(ExitCodes.Succeeded, code);
        var defaults = new JobSpec();
        foreach (var (flag, value) in new[] { ("--lr", "0.001"), ("--momentum", "0.9"), ("--optimizer", "sgd"), ("--schedule", "constant"), ("--device", "auto"), ("--val-fraction", "0.2"), ("--epochs", $"{defaults.Training.Epochs}") })
            Assert.Matches($@"(?m)^\s+{flag} <[^>]+>\s.*\[default: {System.Text.RegularExpressions.Regex.Escape(value)}\]", help);
    }

    [Fact]
    public async Task SchemaPrintsTheJobSchema()
    {
        var (code, output, _) = await Run("schema");
        Assert.Equal(ExitCodes.Succeeded, code);
        Assert.Equal(JobSchema.Text(), output);
    }
}
