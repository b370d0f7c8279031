using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Models;
using FineTune.Workflow.Jobs;

namespace FineTune.Cli;

/// <summary><c>finetune train</c>: a job from a file and/or flags, run locally through the durable workflow.</summary>
internal static class TrainCommand
{
    public static readonly Option<string> Work = new("--work") { Description = "Folder for artifacts and caches.", DefaultValueFactory = _ => ".finetune" };
    public static readonly Option<string?> Storage = new("--storage") { Description = "Azure Storage connection string (e.g. UseDevelopmentStorage=true) for blob artifacts instead of the local folder." };
    public static readonly Option<string> TaskHub = new("--task-hub")
    {
        Description = "With --storage: the task hub (in that account) the run and its workers share.",
        DefaultValueFactory = _ => AzureStorageBackend.DefaultTaskHub,
    };

    public static Command Create(TextWriter output, TextWriter error)
    {
        var jobFile = new Argument<FileInfo?>("job") { Description = "A job spec (JSON). Flags override its fields.", Arity = ArgumentArity.ZeroOrOne };
        var dataset = new Option<string?>("--dataset") { Description = "A folder of class folders, a .zip, or a path,label .csv." };
        var model = new Option<string?>("--model") { Description = "Model family (see 'finetune models')." };
        var weights = new Option<string?>("--weights") { Description = "bundled, a file, an https URL, or blob:NAME." };
        var epochs = new Option<int?>("--epochs");
        var batch = new Option<int?>("--batch-size");
        var freeze = new Option<string?>("--freeze") { Description = $"What trains: {FreezeMode.Described}." };
        var resize = new Option<string?>("--resize") { Description = $"How images fit the model's square input: {ResizeModes.Choices.Described}." };
        var jobId = new Option<string?>("--job-id");
        var command = new Command("train", "Fine-tune a model on your images.") { jobFile, dataset, model, weights, epochs, batch, freeze, resize, jobId, Work, Storage, TaskHub };
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
            Set(job, ["dataset", "location"], result.GetValue(dataset) is { } d ? Path.GetFullPath(d) : null);
            Set(job, ["model"], result.GetValue(model));
            Set(job, ["weights", "source"], result.GetValue(weights));
            Set(job, ["training", "epochs"], result.GetValue(epochs));
            Set(job, ["training", "batchSize"], result.GetValue(batch));
            Set(job, ["freeze"], result.GetValue(freeze));
            Set(job, ["dataset", "resize"], result.GetValue(resize));
            Set(job, ["jobId"], result.GetValue(jobId));
            return await RunAsync(job, Runner(result, output, error), error, cancellationToken);
        });
        return command;
    }

    /// <summary>The local runner the shared options (--work, --storage, --task-hub) describe.</summary>
    public static LocalRunner Runner(ParseResult result, TextWriter output, TextWriter error) =>
        new(Path.GetFullPath(result.GetValue(Work)!), result.GetValue(Storage), result.GetValue(TaskHub)!, output, error);

    public static async Task<int> RunAsync(JsonObject job, LocalRunner runner, TextWriter error, CancellationToken cancellationToken)
    {
        JobSpec spec;
        try
        {
            spec = JobSpecReader.Read(job.ToJsonString(), localPaths: true);
        }
        catch (InvalidJobSpecException e)
        {
            foreach (var problem in e.Errors) error.WriteLine($"job spec: {problem.Field}: {problem.Reason}");
            return ExitCodes.BadInput;
        }
        var location = spec.Dataset.Location;
        if (!location.StartsWith("blob:", StringComparison.Ordinal) && !Directory.Exists(location) && !File.Exists(location))
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
