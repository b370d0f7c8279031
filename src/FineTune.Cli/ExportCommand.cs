using System.CommandLine;
using FineTune.Core.Export;
using FineTune.Core.Models;
using FineTune.Storage;
using FineTune.Workflow.Services;

namespace FineTune.Cli;

/// <summary><c>finetune export RUN --format onnx [--output PATH]</c>: a published model for other runtimes.</summary>
internal static class ExportCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var run = new Argument<string>("run") { Description = $"A run id (published under --work) or a folder with {string.Join(" and ", RunLayout.LoadableModelFiles)}." };
        var format = new Option<string>("--format") { Description = $"The format: {ExportFormats.Choices.Described}.", DefaultValueFactory = _ => ExportFormats.Choices[ExportFormat.Onnx].Name };
        var destination = new Option<string?>("--output") { Description = $"The file to write. Default: {RunLayout.OnnxFile} beside the published model." };
        var command = new Command("export", "Export a published model for other runtimes (the preprocessing and class names go into its metadata).")
        {
            run, format, destination, TrainCommand.Work, TrainCommand.Storage,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            if (!ExportFormats.Choices.TryParse(result.GetValue(format), out _))
            {
                error.WriteLine($"format: must be {ExportFormats.Choices.Allowed}");
                return ExitCodes.BadInput;
            }
            string work = Path.GetFullPath(result.GetValue(TrainCommand.Work)!);
            string folder = result.GetValue(TrainCommand.Storage) is { } storage
                ? await PredictCommand.DownloadAsync(result.GetValue(run)!, storage, work, cancellationToken)
                : PredictCommand.PublishedFolder(result.GetValue(run)!, work);
            string card = Path.Combine(folder, RunLayout.ModelCardFile), weights = Path.Combine(folder, RunLayout.SafetensorsFile);
            if (!File.Exists(card) || !File.Exists(weights))
            {
                error.WriteLine($"run: no published model in '{folder}' ({string.Join(" and ", RunLayout.LoadableModelFiles)})");
                return ExitCodes.BadInput;
            }
            ModelCard modelCard;
            try
            {
                modelCard = ModelCard.Read(File.ReadAllBytes(card), card);
            }
            catch (InvalidModelCardException e)
            {
                error.WriteLine($"run: {e.Message}");
                return ExitCodes.BadInput;
            }
            string path = Path.GetFullPath(result.GetValue(destination) ?? Path.Combine(folder, RunLayout.OnnxFile));
            if (Path.GetDirectoryName(path) is { } parent && !Directory.Exists(parent))
            {
                error.WriteLine($"output: the folder '{parent}' does not exist");
                return ExitCodes.BadInput;
            }
            var preprocessing = modelCard.Preprocessing;
            var family = ModelRegistry.Get(modelCard.Model).For(preprocessing);
            IReadOnlyList<string> written;
            using (var model = FineTuneModel.Load(family, modelCard.Classes.Count, weights))
                written = OnnxExporter.Save(model, modelCard.Classes, preprocessing, path);
            string besides = written.Count > 1 ? $" (its weights in {string.Join(", ", written.Where(f => f != path))}: keep them together)" : "";
            output.WriteLine($"{path}: {modelCard.Model}, {modelCard.Classes.Count} classes, input [batch, 3, {preprocessing.CropSize}, {preprocessing.CropSize}], {written.Sum(f => new FileInfo(f).Length) / 1e6:F1} MB{besides}");
            return ExitCodes.Succeeded;
        });
        return command;
    }
}
