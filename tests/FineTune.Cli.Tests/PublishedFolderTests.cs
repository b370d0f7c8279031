using System.Text.Json;
using FineTune.Core.Weights;
using FineTune.Cli.Tests.Reference;
using FineTune.Storage;

namespace FineTune.Cli.Tests;

/// <summary>
/// The published folder as a PyTorch or model-hub user gets it: the README's script, run unchanged by Debian's
/// Python (torch 1.13, torchvision 0.14) from a copy of the folder, must predict what <c>finetune predict</c> does.
/// Here the two bundled-weights families (mean-image input; folded RGB input, padded) with everything the folder
/// holds; PredictParityTests runs the script of every family it trains.
/// </summary>
public sealed class PublishedFolderTests : IDisposable
{
    private const double Tolerance = 1e-3;

    private readonly string _dir = Directory.CreateTempSubdirectory("published-folder-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(CntkResNet18.FamilyName, "crop")]
    [InlineData(CntkResNet18.RgbFamilyName, "pad")]
    public void TheReadmesScriptPredictsWhatFinetunePredicts(string family, string resize)
    {
        string dataset = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 3, ["animals", "food"]);
        string[] images = [TuxPaintStamps.Images("animals", 4)[3], TuxPaintStamps.Images("food", 4)[3], TuxPaintStamps.Images("town", 1)[0]];
        string job = family + "-hub";
        var train = FinetuneProcess.Run(_dir, "train", "--dataset", dataset, "--model", family, "--resize", resize, "--epochs", "1", "--batch-size", "4", "--job-id", job);
        Assert.True(train.ExitCode == 0, $"train: exit {train.ExitCode}: {train.Error}\n{train.Output}");
        var predict = FinetuneProcess.Run(_dir, ["predict", "--model", job, "--top", "2", .. images]);
        Assert.True(predict.ExitCode == 0, $"predict: exit {predict.ExitCode}: {predict.Error}");

        string published = Path.Combine(_dir, ".finetune", "artifacts", "runs", job, "published");
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(published, RunLayout.HubConfigFile))).RootElement;
        Assert.Equal(family, config.GetProperty("architecture").GetString());
        Assert.Equal(2, config.GetProperty("num_classes").GetInt32());
        Assert.Equal(["animals", "food"], config.GetProperty("label_names").EnumerateArray().Select(l => l.GetString()));
        Assert.Equal(resize == "pad" ? "pad" : "center", config.GetProperty("pretrained_cfg").GetProperty("crop_mode").GetString());
        Assert.Equal(0.875, config.GetProperty("pretrained_cfg").GetProperty("crop_pct").GetDouble());
        var card = JsonDocument.Parse(File.ReadAllText(Path.Combine(published, RunLayout.ModelCardFile))).RootElement;
        Assert.Equal(1, card.GetProperty("bestEpoch").GetInt32()); // counted from 1, as train printed it
        Assert.Contains("best epoch", train.Output);

        string readme = File.ReadAllText(Path.Combine(published, RunLayout.ReadmeFile));
        Assert.StartsWith("---\nlibrary_name: pytorch\n", readme);
        Assert.Contains("model-index:", readme);
        Assert.Contains($"- {family}\n", readme);
        var theirs = ReadmeScript.Run(published, Path.Combine(_dir, "hub"), images);
        var ours = JsonDocument.Parse(predict.Output).RootElement.EnumerateArray().ToList();
        Assert.Equal(images.Length, theirs.Count);
        for (int i = 0; i < images.Length; i++)
        {
            foreach (var prediction in ours[i].GetProperty("predictions").EnumerateArray())
            {
                double p = prediction.GetProperty("probability").GetDouble();
                double q = theirs[i][prediction.GetProperty("class").GetString()!];
                Assert.True(Math.Abs(p - q) <= Tolerance, $"{images[i]}: predict {p:F6}, README script {q:F6}");
            }
        }
    }
}
