using System.Text.Json;
using FineTune.Cli.Tests.Reference;
using FineTune.Core.Export;
using FineTune.Core.Weights;
using FineTune.Storage;

namespace FineTune.Cli.Tests;

/// <summary>
/// The published folder as a PyTorch or model-hub user gets it: the README's script, run unchanged by Debian's
/// Python (torch 1.13, torchvision 0.14) from a copy of the folder, must predict what <c>finetune predict</c> does, and
/// so must its ONNX Runtime script on the model.onnx the job asked for. Here the two bundled-weights families
/// (mean-image input; folded RGB input, padded) with everything the folder holds; PredictParityTests runs the
/// PyTorch script of every family it trains.
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
        string job = family + "-hub", spec = Path.Combine(_dir, "job.json");
        File.WriteAllText(spec, """{ "publish": { "onnx": true } }""");
        var train = FinetuneProcess.Run(_dir, "train", spec, "--dataset", dataset, "--model", family, "--resize", resize, "--epochs", "1", "--batch-size", "4", "--job-id", job);
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
        Assert.Contains($"`{RunLayout.OnnxFile}` is the same model as an ONNX graph (opset {OnnxExporter.Opset}): input `{OnnxExporter.InputName}`, " +
            $"float32 [batch, 3, 224, 224]; output `{OnnxExporter.OutputName}`, [batch, 2].", readme);
        var ours = JsonDocument.Parse(predict.Output).RootElement.EnumerateArray().ToList();
        AssertSameProbabilities("README script", ReadmeScript.Run(published, Path.Combine(_dir, "hub"), images));

        var onnx = ReadmeScript.RunOnnx(published, Path.Combine(_dir, "hub-onnx"), images);
        foreach (var call in onnx.Calls)
        {
            Assert.Equal(RunLayout.OnnxFile, call.GetProperty("model").GetString());
            Assert.Equal([OnnxExporter.OutputName], call.GetProperty("outputs").EnumerateArray().Select(o => o.GetString()));
            var input = Assert.Single(call.GetProperty("inputs").EnumerateObject());
            Assert.Equal(OnnxExporter.InputName, input.Name);
            Assert.Equal([1, 3, 224, 224], input.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
        }
        AssertSameProbabilities("README ONNX Runtime script", onnx.Probabilities);

        void AssertSameProbabilities(string script, List<Dictionary<string, double>> theirs)
        {
            Assert.Equal(images.Length, theirs.Count);
            for (int i = 0; i < images.Length; i++)
            {
                foreach (var prediction in ours[i].GetProperty("predictions").EnumerateArray())
                {
                    double p = prediction.GetProperty("probability").GetDouble();
                    double q = theirs[i][prediction.GetProperty("class").GetString()!];
                    Assert.True(Math.Abs(p - q) <= Tolerance, $"{images[i]}: predict {p:F6}, {script} {q:F6}");
                }
            }
        }
    }
}
