using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace FineTune.Cli;

/// <summary><c>finetune sweep job.json</c>: a job with a <c>sweep</c> section, its trials fanned out through the durable workflow.</summary>
internal static class SweepCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var jobFile = new Argument<FileInfo>("job") { Description = "A job spec (JSON) with a \"sweep\" section: the fields to vary and how." };
        var dataset = new Option<string?>("--dataset") { Description = "A folder of class folders, a .zip, or a .csv or .jsonl manifest. Default: the job's dataset.location." };
        var command = new Command("sweep", "Try many settings of a job and publish the best (trials share one backbone pass).")
        {
            jobFile, dataset, TrainCommand.Work, TrainCommand.Storage, TrainCommand.TaskHub,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            JsonObject job;
            try
            {
                job = JsonNode.Parse(await File.ReadAllTextAsync(result.GetValue(jobFile)!.FullName, cancellationToken)) as JsonObject
                    ?? throw new JsonException("the job file is not a JSON object");
            }
            catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
            {
                error.WriteLine($"job file: {e.Message}");
                return ExitCodes.BadInput;
            }
            if (job["sweep"] is not JsonObject)
            {
                error.WriteLine("job file: a sweep needs a \"sweep\" section, e.g. {\"parameters\": {\"training.learningRate\": [0.001, 0.01]}}");
                return ExitCodes.BadInput;
            }
            if (result.GetValue(dataset) is { } location)
                (job["dataset"] as JsonObject ?? (JsonObject)(job["dataset"] = new JsonObject()))["location"] = Path.GetFullPath(location);
            return await TrainCommand.RunAsync(job, TrainCommand.Runner(result, output, error), error, cancellationToken);
        });
        return command;
    }
}
