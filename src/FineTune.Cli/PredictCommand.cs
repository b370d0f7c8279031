using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Core.Models;
using FineTune.Storage;
using FineTune.Workflow.Services;

namespace FineTune.Cli;

/// <summary>
/// <c>finetune predict --model RUN</c>: classify image files (JSON on stdout), a folder's images (<c>--input-dir</c>) or a
/// manifest's (<c>--csv</c>), a batch per forward; <c>--output</c> writes predictions.csv (<see cref="PredictionsCsv"/>), and
/// progress goes to stderr.
/// </summary>
internal static class PredictCommand
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>How often progress is written while images are classified.</summary>
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(2);

    /// <summary>One image's answer: its predictions, or why it could not be read.</summary>
    private sealed record Answer(string Image, IReadOnlyList<ClassProbability>? Predictions, string? Error = null);

    /// <summary>An image to classify: its file, what the output calls it, its true label (empty when unknown).</summary>
    private sealed record Input(string Path, string Name, string Label);

    public static Command Create(TextWriter output, TextWriter error)
    {
        var model = new Option<string>("--model") { Description = $"A run id (published under --work) or a folder with {string.Join(" and ", RunLayout.LoadableModelFiles)}.", Required = true };
        var top = CliOptions.Integer("--top", "How many classes to list per image.", 5);
        var inputDir = new Option<string?>("--input-dir") { Description = $"Classify every image under this folder, subfolders too ({string.Join(", ", ImageLoader.Extensions.Order())}). Required unless image files or --csv are named." };
        var csv = new Option<string?>("--csv") { Description = "Classify the images a manifest names (.csv or .jsonl, a path column; with a label column, accuracy is reported). Required unless image files or --input-dir are named." };
        var outputFile = new Option<string?>("--output") { Description = "Write predictions.csv here (path,label,predicted,confidence,top,error); default with --input-dir or --csv: stdout." };
        var batchSize = CliOptions.Integer("--batch-size", "Images per forward pass.", Predictor.DefaultBatchSize);
        var images = new Argument<string[]>("images") { Description = "Image files to classify (JSON on stdout unless --output).", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("predict", "Classify images with a published model.") { model, top, inputDir, csv, outputFile, batchSize, images, TrainCommand.Work, TrainCommand.Storage };
        command.SetAction(async (result, cancellationToken) =>
        {
            string[] files = result.GetValue(images) ?? [];
            string? folderInput = result.GetValue(inputDir), manifest = result.GetValue(csv), csvOutput = result.GetValue(outputFile);
            int k = result.GetValue(top), batch = result.GetValue(batchSize);
            if (Problem() is { } problem)
            {
                error.WriteLine(problem);
                return ExitCodes.BadInput;
            }
            List<Input>? listed;
            try
            {
                listed = manifest is null ? null : [.. ManifestSource.Images(manifest, manifest).Select(i => new Input(i.Path, i.Written, i.Label))];
            }
            catch (InvalidDatasetException e)
            {
                error.WriteLine($"csv: {e.Message}");
                return ExitCodes.BadInput;
            }

            string work = Path.GetFullPath(result.GetValue(TrainCommand.Work)!);
            string folder = result.GetValue(TrainCommand.Storage) is { } storage
                ? await DownloadAsync(result.GetValue(model)!, storage, work, cancellationToken)
                : PublishedFolder(result.GetValue(model)!, work);
            string card = Path.Combine(folder, RunLayout.ModelCardFile), weights = Path.Combine(folder, RunLayout.SafetensorsFile);
            if (!File.Exists(card) || !File.Exists(weights))
            {
                error.WriteLine($"model: no published model in '{folder}' ({string.Join(" and ", RunLayout.LoadableModelFiles)})");
                return ExitCodes.BadInput;
            }
            ModelCard modelCard;
            try
            {
                modelCard = ModelCard.Read(File.ReadAllBytes(card), card);
            }
            catch (InvalidModelCardException e)
            {
                error.WriteLine($"model: {e.Message}");
                return ExitCodes.BadInput;
            }
            using var predictor = Predictor.Load(ModelRegistry.Get(modelCard.Model), modelCard.Classes, weights, modelCard.Preprocessing);
            var inputs = listed
                ?? (folderInput is not null
                    ? ImageLoader.FilesUnder(folderInput).Select(f => new Input(f, Path.GetRelativePath(folderInput, f), ""))
                    : files.Select(f => new Input(f, f, "")));

            if (csvOutput is null && folderInput is null && manifest is null)
            {
                var answers = predictor.PredictAll(inputs.Select(i => i.Path), k, batch, cancellationToken)
                    .Select(o => new Answer(o.Image, o.Classes, o.Error)).ToList();
                output.WriteLine(JsonSerializer.Serialize(answers, Json));
                // Some images could not be classified: the JSON says which and why.
                return answers.Any(a => a.Error is not null) ? ExitCodes.Failed : ExitCodes.Succeeded;
            }

            var tally = new Tally(error, listed?.Count);
            try
            {
                await using var writer = csvOutput is null ? null : new StreamWriter(csvOutput, append: false, new UTF8Encoding(false));
                WriteCsv(writer ?? output, predictor, inputs, k, batch, tally, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                tally.Report(final: true);
                error.WriteLine("cancelled");
                return ExitCodes.Cancelled;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A folder that cannot be listed, an output that cannot be written: what was written stays.
                tally.Report(final: true);
                error.WriteLine($"predict: {e.Message}");
                return ExitCodes.Failed;
            }
            tally.Report(final: true);
            return tally.Errors > 0 ? ExitCodes.Failed : ExitCodes.Succeeded;

            string? Problem()
            {
                int sources = (files.Length > 0 ? 1 : 0) + (folderInput is not null ? 1 : 0) + (manifest is not null ? 1 : 0);
                if (sources == 0) return "images: name image files, or use --input-dir or --csv";
                if (sources > 1) return "images: name image files, --input-dir or --csv, only one of them";
                if (k < 1) return "top: must be at least 1";
                if (batch < 1) return "batch-size: must be at least 1";
                if (folderInput is not null && !Directory.Exists(folderInput)) return $"input-dir: '{folderInput}' is not a folder";
                if (manifest is not null && !File.Exists(manifest)) return $"csv: '{manifest}' does not exist";
                if (csvOutput is not null && Path.GetDirectoryName(Path.GetFullPath(csvOutput)) is { } parent && !Directory.Exists(parent))
                    return $"output: the folder '{parent}' does not exist";
                if (csvOutput is not null && Directory.Exists(csvOutput)) return $"output: '{csvOutput}' is a folder";
                return null;
            }
        });
        return command;
    }

    private static void WriteCsv(TextWriter writer, Predictor predictor, IEnumerable<Input> inputs, int top, int batchSize, Tally tally, CancellationToken cancellationToken)
    {
        var csv = new PredictionsCsv(writer, errors: true);
        // The outcomes come back in the inputs' order; their names and labels are matched as they do. The inputs are
        // read ahead on the predictor's decoding thread.
        var pending = new ConcurrentQueue<Input>();
        var paths = inputs.Select(i =>
        {
            pending.Enqueue(i);
            return i.Path;
        });
        foreach (var outcome in predictor.PredictAll(paths, top, batchSize, cancellationToken))
        {
            if (!pending.TryDequeue(out var input)) throw new InvalidOperationException("an outcome for an image never read");
            if (outcome.Classes is { } classes)
            {
                csv.Write(new Prediction(input.Name, input.Label, classes[0].Class, classes[0].Probability, [.. classes.Select(c => c.Class)]));
                tally.Add(input.Label, classes[0].Class);
            }
            else
            {
                csv.WriteError(input.Name, input.Label, outcome.Error!);
                tally.AddError();
            }
        }
    }

    /// <summary>Counts as images are classified, and writes them to stderr now and then: rate, errors, accuracy on labelled images.</summary>
    private sealed class Tally(TextWriter error, int? total)
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private TimeSpan _lastReport;
        private int _done, _labelled, _correct;

        public int Errors { get; private set; }

        public void Add(string label, string predicted)
        {
            if (label.Length > 0)
            {
                _labelled++;
                if (label == predicted) _correct++;
            }
            Count();
        }

        public void AddError()
        {
            Errors++;
            Count();
        }

        private void Count()
        {
            _done++;
            if (_clock.Elapsed - _lastReport >= ProgressInterval) Report(final: false);
        }

        public void Report(bool final)
        {
            _lastReport = _clock.Elapsed;
            double rate = _done / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
            var line = new StringBuilder(string.Create(CultureInfo.InvariantCulture, $"predict: {_done}{(total is int n ? $"/{n}" : "")} images, {rate.ToString("F1", CultureInfo.InvariantCulture)} images/s"));
            if (Errors > 0) line.Append(CultureInfo.InvariantCulture, $", {Errors} unreadable");
            if (final && _labelled > 0)
                line.Append(CultureInfo.InvariantCulture, $"; top-1 accuracy {(double)_correct / _labelled:F4} on {_labelled} labelled images");
            error.WriteLine(line);
        }
    }

    /// <summary>With --storage the published model is in blob storage: fetched into the work folder's cache first.</summary>
    internal static async Task<string> DownloadAsync(string run, string storage, string work, CancellationToken cancellationToken)
    {
        string folder = Path.Combine(work, "cache", "published", run);
        if (!ArtifactNames.IsValidJobId(run)) return folder;
        var store = new ArtifactStoreOptions { ConnectionString = storage }.Create();
        var layout = new RunLayout(run);
        foreach (var part in RunLayout.LoadableModelFiles)
        {
            string name = layout.Published + part;
            if (!await store.ExistsAsync(name, cancellationToken)) continue;
            Directory.CreateDirectory(folder);
            await using var input = await store.OpenReadAsync(name, cancellationToken);
            await using var output = File.Create(Path.Combine(folder, part));
            await input.CopyToAsync(output, cancellationToken);
        }
        return folder;
    }

    internal static string PublishedFolder(string model, string work) =>
        Directory.Exists(model) || !ArtifactNames.IsValidJobId(model) ? Path.GetFullPath(model) : Path.Combine(work, "artifacts", new RunLayout(model).Published);
}
