using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Export;
using FineTune.Core.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;

namespace FineTune.Cli.Tests;

/// <summary>
/// <c>finetune train</c> (a job asking to publish ONNX too), then <c>finetune export --format onnx</c>, then ONNX Runtime on
/// real photos preprocessed from the graph's own metadata alone: the probabilities must be <c>finetune predict</c>'s.
/// </summary>
public sealed class ExportCommandTests(ITestOutputHelper output) : IDisposable
{
    private const double Tolerance = 1e-4;

    private readonly string _dir = Directory.CreateTempSubdirectory("export-onnx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ExportedOnnxGivesPredictsProbabilities()
    {
        string dataset = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 3, ["animals", "food", "town"]);
        string[] images = [TuxPaintStamps.Images("animals", 5)[4], TuxPaintStamps.Images("food", 5)[4], TuxPaintStamps.Images("household", 1)[0], TuxPaintStamps.Images("plants", 1)[0]];
        string job = Path.Combine(_dir, "job.json");
        File.WriteAllText(job, """{ "jobId": "onnx-run", "training": { "epochs": 2, "batchSize": 4 }, "publish": { "onnx": true } }""");
        var train = FinetuneProcess.Run(_dir, "train", job, "--dataset", dataset);
        Assert.True(train.ExitCode == 0, $"train: exit {train.ExitCode}: {train.Error}\n{train.Output}");

        string onnx = Path.Combine(_dir, "exported.onnx");
        var export = FinetuneProcess.Run(_dir, "export", "onnx-run", "--format", "onnx", "--output", onnx);
        Assert.True(export.ExitCode == 0, $"export: exit {export.ExitCode}: {export.Error}\n{export.Output}");
        Assert.StartsWith(onnx + ":", export.Output);
        // The publish step and the command write the same graph: the weights they start from are the same floats.
        string published = Path.Combine(_dir, ".finetune", "artifacts", "runs", "onnx-run", "published", "model.onnx");
        Assert.Equal(File.ReadAllBytes(published), File.ReadAllBytes(onnx));
        // Not only ONNX Runtime's reading: ONNX's own checker, with strict shape inference, accepts the graph.
        var check = ProcessRunner.Run("/usr/bin/python3", [Path.Combine(AppContext.BaseDirectory, "Reference", "onnx_check.py"), onnx], timeout: TimeSpan.FromMinutes(2));
        Assert.True(check.ExitCode == 0, $"onnx.checker: {check.Error}");
        Assert.Equal("logits batch 3", check.Output.Trim());

        var predict = FinetuneProcess.Run(_dir, ["predict", "--model", "onnx-run", "--top", "3", .. images]);
        Assert.True(predict.ExitCode == 0, $"predict: exit {predict.ExitCode}: {predict.Error}\n{predict.Output}");
        var answers = JsonDocument.Parse(predict.Output).RootElement.EnumerateArray()
            .Select(a => a.GetProperty("predictions").EnumerateArray().ToDictionary(p => p.GetProperty("class").GetString()!, p => p.GetProperty("probability").GetDouble()))
            .ToList();

        using var session = new InferenceSession(onnx);
        var metadata = session.ModelMetadata.CustomMetadataMap;
        var classes = JsonSerializer.Deserialize<string[]>(metadata[OnnxExporter.MetadataKeys.Classes])!;
        Assert.Equal(["animals", "food", "town"], classes);
        var preprocessing = FromMetadata(JsonDocument.Parse(metadata[OnnxExporter.MetadataKeys.Preprocessing]).RootElement);
        int size = preprocessing.CropSize;
        var pixels = images.SelectMany(image =>
        {
            var chw = new float[3 * size * size];
            ImageLoader.Fill(ImageLoader.Fit(ImageLoader.Decode(image), preprocessing), preprocessing, chw);
            return chw;
        }).ToArray();
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, new DenseTensor<float>(pixels, [images.Length, 3, size, size]))]);
        var logits = results.Single().AsTensor<float>().ToArray();

        double worst = 0;
        for (int i = 0; i < images.Length; i++)
        {
            var row = logits.Skip(i * classes.Length).Take(classes.Length).Select(l => (double)l).ToArray();
            double max = row.Max(), sum = row.Sum(l => Math.Exp(l - max));
            for (int k = 0; k < classes.Length; k++)
            {
                double difference = Math.Abs(Math.Exp(row[k] - max) / sum - answers[i][classes[k]]);
                worst = Math.Max(worst, difference);
                Assert.True(difference <= Tolerance, $"{images[i]} {classes[k]}: ONNX Runtime {Math.Exp(row[k] - max) / sum:F6}, predict {answers[i][classes[k]]:F6}");
            }
        }
        double spread = answers.Max(a => a["animals"]) - answers.Min(a => a["animals"]);
        Assert.True(spread >= 100 * Tolerance, $"P(animals) varies by only {spread:F5} over the photos");
        output.WriteLine($"resnet18-cntk trained 2 epochs: max |ONNX Runtime − predict| {worst:E2} on {images.Length} photos, P(animals) spread {spread:F3}, {new FileInfo(onnx).Length / 1e6:F1} MB");
    }

    [Fact]
    public async Task ExportRefusesAnUnknownFormatAndAMissingRun()
    {
        var error = new StringWriter();
        Assert.Equal(ExitCodes.BadInput, await FineTuneCommand.RunAsync(["export", _dir, "--format", "tflite"], new StringWriter(), error));
        Assert.Contains("format: must be onnx", error.ToString());

        error = new StringWriter();
        Assert.Equal(ExitCodes.BadInput, await FineTuneCommand.RunAsync(["export", _dir], new StringWriter(), error));
        Assert.Contains($"run: no published model in '{_dir}'", error.ToString());
    }

    /// <summary>What a user of the graph reads from its metadata, as our preprocessing: no family table needed.</summary>
    private static Preprocessing FromMetadata(JsonElement p) =>
        new(p.GetProperty("resizeSize").GetInt32(), p.GetProperty("cropSize").GetInt32(),
            p.GetProperty("channelOrder").GetString() == "bgr" ? ChannelOrder.Bgr : ChannelOrder.Rgb,
            p.GetProperty("scale").GetSingle(),
            [.. p.GetProperty("mean").EnumerateArray().Select(v => v.GetSingle())],
            [.. p.GetProperty("std").EnumerateArray().Select(v => v.GetSingle())])
        {
            Resize = ResizeModes.Choices.Parse(p.GetProperty("resize").GetString()),
        };
}
