using System.CommandLine;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Core.Models;
using FineTune.Storage;
using FineTune.Workflow.Services;

namespace FineTune.Cli;

/// <summary><c>finetune predict --model RUN images…</c>: classify images with a published model; JSON on stdout.</summary>
internal static class PredictCommand
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>One image's answer: its predictions, or why it could not be read.</summary>
    private sealed record Answer(string Image, IReadOnlyList<ClassProbability>? Predictions, string? Error = null);

    public static Command Create(TextWriter output, TextWriter error)
    {
        var model = new Option<string>("--model") { Description = $"A run id (published under --work) or a folder with {string.Join(" and ", RunLayout.LoadableModelFiles)}.", Required = true };
        var top = CliOptions.Integer("--top", "How many classes to list per image.", 5);
        var images = new Argument<string[]>("images") { Description = "Image files to classify.", Arity = ArgumentArity.OneOrMore };
        var command = new Command("predict", "Classify images with a published model.") { model, top, images, TrainCommand.Work, TrainCommand.Storage };
        command.SetAction(async (result, cancellationToken) =>
        {
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
            int k = result.GetValue(top);
            if (k < 1)
            {
                error.WriteLine("top: must be at least 1");
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
            var answers = result.GetValue(images)!.Select(image =>
            {
                try
                {
                    return new Answer(image, predictor.Predict(image, k));
                }
                catch (Exception e) when (e is InvalidImageException or IOException or UnauthorizedAccessException)
                {
                    return new Answer(image, null, e is InvalidImageException invalid ? invalid.Reason : e.Message);
                }
            }).ToList();
            output.WriteLine(JsonSerializer.Serialize(answers, Json));
            // Some images could not be classified: the JSON says which and why.
            return answers.Any(a => a.Error is not null) ? ExitCodes.Failed : ExitCodes.Succeeded;
        });
        return command;
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
