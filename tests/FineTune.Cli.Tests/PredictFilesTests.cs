using System.Globalization;
using System.Text.Json;

namespace FineTune.Cli.Tests;

/// <summary><c>finetune predict --input-dir / --csv / --output</c> on a model trained here, against the same images named one by one.</summary>
public sealed class PredictFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("predict-files-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void AFolderAndAManifestGivePredictionsCsvWithErrorsAsRowsAndAccuracy()
    {
        string dataset = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 3, ["animals", "food"]);
        var train = FinetuneProcess.Run(_dir, "train", "--dataset", dataset, "--model", "resnet18-cntk", "--epochs", "1", "--batch-size", "4", "--job-id", "files-1");
        Assert.True(train.ExitCode == 0, $"train: exit {train.ExitCode}: {train.Error}");

        // A folder with a subfolder, an unreadable image, a file that is not an image by its name, a hidden file.
        string input = Path.Combine(_dir, "input");
        Directory.CreateDirectory(Path.Combine(input, "more, and \"quoted\""));
        var photos = TuxPaintStamps.Images("animals", 5).Skip(3).Concat(TuxPaintStamps.Images("food", 5).Skip(3)).ToList();
        File.Copy(photos[0], Path.Combine(input, "a.png"));
        File.Copy(photos[1], Path.Combine(input, "b.PNG"));
        File.Copy(photos[2], Path.Combine(input, "more, and \"quoted\"", "c.png"));
        File.Copy(photos[3], Path.Combine(input, ".hidden.png"));
        File.WriteAllText(Path.Combine(input, "broken.png"), "not an image");
        File.WriteAllText(Path.Combine(input, "notes.txt"), "not listed");

        var folder = FinetuneProcess.Run(_dir, "predict", "--model", "files-1", "--input-dir", "input", "--output", "predictions.csv", "--batch-size", "2", "--top", "2");
        Assert.True(folder.ExitCode == ExitCodes.Failed, $"exit {folder.ExitCode}: {folder.Error}");
        Assert.Matches(@"predict: 4 images, [0-9.]+ images/s, 1 unreadable", folder.Error);
        var lines = File.ReadAllLines(Path.Combine(_dir, "predictions.csv"));
        Assert.Equal("path,label,predicted,confidence,top,error", lines[0]);
        Assert.Equal(5, lines.Length);
        Assert.Equal(["a.png,", "b.PNG,", "broken.png,", "\"more, and \"\"quoted\"\"/c.png\","], lines.Skip(1).Select((l, i) => l[..(i < 3 ? l.IndexOf(',') + 1 : 29)]));
        Assert.EndsWith(",,,,,not an image", lines[3]);

        // The same images one by one, as JSON: the same classes and probabilities.
        var single = FinetuneProcess.Run(_dir, "predict", "--model", "files-1", "--top", "2", "input/a.png", "input/b.PNG");
        var answers = JsonDocument.Parse(single.Output).RootElement.EnumerateArray().ToList();
        foreach (var (line, answer) in lines.Skip(1).Take(2).Zip(answers))
        {
            var cells = line.Split(',');
            var best = answer.GetProperty("predictions")[0];
            Assert.Equal(best.GetProperty("class").GetString(), cells[2]);
            Assert.Equal(best.GetProperty("probability").GetDouble(), double.Parse(cells[3], CultureInfo.InvariantCulture), 5);
        }

        // A manifest with labels: accuracy on stderr, the rows in its order with its paths and labels; to stdout without --output.
        File.WriteAllText(Path.Combine(input, "list.csv"), "path,label\nb.PNG,food\na.png,animals\nbroken.png,food\nmissing.png,food\n");
        var manifest = FinetuneProcess.Run(_dir, "predict", "--model", "files-1", "--csv", "input/list.csv");
        Assert.Equal(ExitCodes.Failed, manifest.ExitCode);
        var rows = manifest.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => l.Split(',')).ToList();
        Assert.Equal(["b.PNG", "a.png", "broken.png", "missing.png"], rows.Select(r => r[0]));
        Assert.Equal(["food", "animals", "food", "food"], rows.Select(r => r[1]));
        int correct = rows.Take(2).Count(r => r[1] == r[2]);
        Assert.Contains($"predict: 4/4 images", manifest.Error);
        Assert.Contains($"top-1 accuracy {correct / 2.0:F4} on 2 labelled images", manifest.Error);

        // Bad input is exit 2 with the reason.
        File.WriteAllText(Path.Combine(input, "odd.csv"), "path,colour\na.png,red\n");
        var unknown = FinetuneProcess.Run(_dir, "predict", "--model", "files-1", "--csv", "input/odd.csv");
        Assert.Equal(ExitCodes.BadInput, unknown.ExitCode);
        Assert.Contains("unknown column 'colour'", unknown.Error);
        var missing = FinetuneProcess.Run(_dir, "predict", "--model", "files-1", "--input-dir", "nowhere");
        Assert.Equal((ExitCodes.BadInput, "input-dir: 'nowhere' is not a folder"), (missing.ExitCode, missing.Error.Trim()));
        Assert.Equal(ExitCodes.BadInput, FinetuneProcess.Run(_dir, "predict", "--model", "files-1", "--csv", "none.csv").ExitCode);
        Assert.Equal(ExitCodes.BadInput, FinetuneProcess.Run(_dir, "predict", "--model", "files-1", "--input-dir", "input", "input/a.png").ExitCode);
    }
}
