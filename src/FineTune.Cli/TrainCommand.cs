using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core;
using FineTune.Core.Models;
using FineTune.Core.Runtime;
using FineTune.Core.Training;
using FineTune.Workflow.Jobs;

namespace FineTune.Cli;

/// <summary><c>finetune train</c>: a job from a file and/or flags, run locally through the durable workflow.</summary>
internal static class TrainCommand
{
    public static readonly Option<string> Work = new("--work") { Description = "Folder for artifacts and caches.", DefaultValueFactory = _ => ".finetune" };
    public static readonly Option<string?> Storage = new("--storage") { Description = "Azure Storage connection string (e.g. UseDevelopmentStorage=true) for blob artifacts instead of the local folder (default: none, the --work folder)." };
    public static readonly Option<string> TaskHub = new("--task-hub")
    {
        Description = "With --storage: the task hub (in that account) the run and its workers share.",
        DefaultValueFactory = _ => AzureStorageSidecar.DefaultTaskHub,
    };

    /// <summary>A flag and the job spec field it sets; set only when typed, so a job file's value stands otherwise.</summary>
    private sealed record Flag(Option Option, string Field, Func<ParseResult, JsonNode?> Value);

    private static Flag Set<T>(Option<T> option, string field, Func<T, JsonNode?> value) => new(option, field, r => value(r.GetValue(option)!));

    private static readonly JobSpec Defaults = new();

    /// <summary>The flags that set job spec fields; each help text names its field and the spec's default.</summary>
    private static readonly Flag[] Flags =
    [
        Set(new Option<string?>("--dataset") { Description = "A folder of class folders, a .zip, or a .csv or .jsonl manifest (dataset.location). Required unless the job file has it." },
            "dataset.location", d => d is null || BlobReference.IsBlob(d) ? d : Path.GetFullPath(d)),
        Set(new Option<string>("--model") { Description = "Model family, see 'finetune models' (model).", DefaultValueFactory = _ => Defaults.Model }, "model", v => v),
        Set(new Option<string>("--weights") { Description = "bundled, torchvision (torchvision's default ImageNet weights for the family) or a torchvision tag such as IMAGENET1K_V1, a file, an https URL, or " + BlobReference.Syntax + " (weights.source).", DefaultValueFactory = _ => Defaults.Weights.Source }, "weights.source", v => v),
        Set(CliOptions.Integer("--epochs", "Passes over the training images (training.epochs).", Defaults.Training.Epochs), "training.epochs", v => v),
        Set(CliOptions.Integer("--batch-size", "Images per step (training.batchSize).", Defaults.Training.BatchSize), "training.batchSize", v => v),
        Set(FreezeOption(Defaults.Freeze), "freeze", v => v),
        Set(CliOptions.Choice("--resize", "How images fit the model's square input (dataset.resize)", ResizeModes.Choices, Defaults.Dataset.Resize), "dataset.resize", v => v),
        Set(CliOptions.Choice("--optimizer", "The optimizer (training.optimizer)", Optimizers.Choices, Defaults.Training.Optimizer), "training.optimizer", v => v),
        Set(CliOptions.Number("--lr", "Learning rate (training.learningRate).", Defaults.Training.LearningRate), "training.learningRate", v => v),
        Set(CliOptions.Number("--momentum", "SGD momentum (training.momentum).", Defaults.Training.Momentum), "training.momentum", v => v),
        Set(CliOptions.Number("--weight-decay", "Weight decay; decoupled from the gradient for adamw (training.weightDecay).", Defaults.Training.WeightDecay), "training.weightDecay", v => v),
        Set(CliOptions.Choice("--schedule", "How the learning rate changes over the epochs (training.schedule)", LearningRateSchedule.Choices, Defaults.Training.Schedule), "training.schedule", v => v),
        Set(CliOptions.Number("--label-smoothing", "Share of each target spread over the other classes (training.labelSmoothing).", Defaults.Training.LabelSmoothing), "training.labelSmoothing", v => v),
        Set(CliOptions.Number("--val-fraction", "Share of each class held out for validation when the dataset has no validation folder (dataset.validationFraction).", Defaults.Dataset.ValidationFraction), "dataset.validationFraction", v => v),
        Set(CliOptions.Number("--test-fraction", "Share of each class held out for the final report when the dataset has no test folder; 0: report on validation (dataset.testFraction).", Defaults.Dataset.TestFraction), "dataset.testFraction", v => v),
        Set(CliOptions.Integer("--seed", "Seeds the split, the new head and the shuffling (seed).", Defaults.Seed), "seed", v => v),
        Set(CliOptions.Choice("--device", "Where to train (device)", TorchDevice.Choices, Defaults.Device), "device", v => v),
        Set(new Option<string?>("--job-id") { Description = "Names the run (jobId). Default: 'ft-' and 12 hex digits of the spec's hash, so the same job resumes." }, "jobId", v => v),
    ];

    public static Command Create(TextWriter output, TextWriter error)
    {
        var jobFile = new Argument<FileInfo?>("job") { Description = "A job spec (JSON; see 'finetune schema'). Flags override its fields. Default: none, the flags alone.", Arity = ArgumentArity.ZeroOrOne };
        // An unknown flag or a folder would otherwise be taken for the job file and fail as a file that cannot be read.
        jobFile.Validators.Add(result =>
        {
            if (result.Tokens is not [var token]) return;
            if (token.Value.StartsWith('-')) result.AddError($"unknown option '{token.Value}' (see 'finetune train --help')");
            else if (Directory.Exists(token.Value)) result.AddError($"job: '{token.Value}' is a folder, not a job file; a folder of images goes after --dataset");
        });
        var command = new Command("train", "Fine-tune a model on your images.") { jobFile };
        foreach (var flag in Flags) command.Options.Add(flag.Option);
        command.Options.Add(Work);
        command.Options.Add(Storage);
        command.Options.Add(TaskHub);
        command.SetAction(async (result, cancellationToken) =>
        {
            JsonObject job;
            try
            {
                var file = result.GetValue(jobFile);
                job = file is null ? [] : JsonNode.Parse(await File.ReadAllTextAsync(file.FullName, cancellationToken)) as JsonObject
                    ?? throw new JsonException("the job file is not a JSON object");
            }
            catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
            {
                error.WriteLine($"job file: {e.Message}");
                return ExitCodes.BadInput;
            }
            var flagOfField = ApplyFlags(result, job);
            return await RunAsync(job, Runner(result, output, error), error, cancellationToken, flagOfField);
        });
        return command;
    }

    /// <summary>Sets the fields of the flags the user typed; returns which flag set which field.</summary>
    internal static Dictionary<string, string> ApplyFlags(ParseResult result, JsonObject job)
    {
        var given = Flags.Where(f => result.Given(f.Option)).ToList();
        foreach (var flag in given) Set(job, flag.Field.Split('.'), flag.Value(result));
        return given.ToDictionary(f => f.Field, f => f.Option.Name);
    }

    private static Option<string> FreezeOption(FreezeMode defaultValue)
    {
        var option = new Option<string>("--freeze") { Description = $"What trains: {FreezeMode.Described} (freeze).", DefaultValueFactory = _ => defaultValue.ToString() };
        option.Validators.Add(result =>
        {
            if (result.Tokens is not [var token]) return;
            try { FreezeMode.Parse(token.Value); }
            catch (FormatException) { result.AddError($"--freeze: '{token.Value}' is not {FreezeMode.Forms}"); }
        });
        return option;
    }

    /// <summary>The local runner the shared options (--work, --storage, --task-hub) describe.</summary>
    public static LocalRunner Runner(ParseResult result, TextWriter output, TextWriter error) =>
        new(Path.GetFullPath(result.GetValue(Work)!), result.GetValue(Storage), result.GetValue(TaskHub)!, output, error);

    /// <param name="flagOfField">the flag that set a field, so its error names what the user typed</param>
    public static async Task<int> RunAsync(JsonObject job, LocalRunner runner, TextWriter error, CancellationToken cancellationToken,
        IReadOnlyDictionary<string, string>? flagOfField = null)
    {
        JobSpec spec;
        try
        {
            spec = JobSpecReader.Read(job.ToJsonString(), localPaths: true);
        }
        catch (InvalidJobSpecException e)
        {
            foreach (var problem in e.Errors)
                error.WriteLine(flagOfField?.GetValueOrDefault(problem.Field) is { } flag
                    ? $"{flag} ({problem.Field}): {problem.Reason}"
                    : $"job spec: {problem.Field}: {problem.Reason}");
            return ExitCodes.BadInput;
        }
        var location = spec.Dataset.Location;
        if (!BlobReference.IsBlob(location) && !Directory.Exists(location) && !File.Exists(location))
        {
            error.WriteLine($"dataset: '{location}' does not exist");
            return ExitCodes.BadInput;
        }
        return await runner.RunAsync(spec, cancellationToken);
    }

    private static void Set(JsonObject job, string[] path, JsonNode? value)
    {
        if (value is null) return;
        var node = job;
        foreach (var part in path[..^1])
            node = node[part] as JsonObject ?? (JsonObject)(node[part] = new JsonObject());
        node[path[^1]] = value;
    }
}
