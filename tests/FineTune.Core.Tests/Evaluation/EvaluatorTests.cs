using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Evaluation;

public class EvaluatorTests
{
    [Fact]
    public void ReportHasAccuracyPerClassMetricsConfusionAndPredictions()
    {
        using var scope = NewDisposeScope();
        // Rows: image logits over classes a, b, c. Truth: a, a, b, c. Predicted: a, b, b, c.
        var logits = tensor(new float[,] { { 5, 0, 0 }, { 0, 3, 1 }, { 0, 4, 0 }, { 1, 0, 6 } });
        var report = Evaluator.Report(DatasetSplits.Test, logits, [0, 0, 1, 2], ["a", "b", "c"], ["1.png", "2,x.png", "3.png", "4.png"]);

        Assert.Equal(4, report.Count);
        Assert.Equal(0.75, report.Top1Accuracy);
        Assert.Null(report.Top5Accuracy);
        Assert.Equal([[1, 1, 0], [0, 1, 0], [0, 0, 1]], report.ConfusionMatrix.Select(r => r.ToArray()));
        var a = report.PerClass[0];
        Assert.Equal((1.0, 0.5, 2.0 / 3, 2), (a.Precision, a.Recall, a.F1, a.Support));
        Assert.Equal((0.5, 1.0), (report.PerClass[1].Precision, report.PerClass[1].Recall));
        double expectedLoss = nn.functional.cross_entropy(logits, tensor(new long[] { 0, 0, 1, 2 })).item<float>();
        Assert.Equal(expectedLoss, report.Loss, 6);
        Assert.Equal(["b", "c", "a"], report.Predictions[1].Top);

        var csv = new StringWriter();
        report.WritePredictionsCsv(csv);
        var lines = csv.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("path,label,predicted,confidence,top", lines[0]);
        Assert.StartsWith("\"2,x.png\",a,b,", lines[2]);

        using var json = JsonDocument.Parse(report.ToJson());
        Assert.Equal(0.75, json.RootElement.GetProperty("top1Accuracy").GetDouble());
        Assert.Equal("test", json.RootElement.GetProperty("split").GetString());
        Assert.False(json.RootElement.TryGetProperty("predictions", out _));
    }

    [Fact]
    public void MisclassifiedImagesAreListedMostConfidentFirstWithTheirTopThree()
    {
        using var scope = NewDisposeScope();
        // Truth: a, a, b, c. Predicted: a (right), b (softmax 0.84), a (0.98), c (right).
        var logits = tensor(new float[,] { { 5, 0, 0, 0 }, { 0, 3, 1, 0 }, { 4, 0, 0, 0 }, { 1, 0, 6, 0 } });
        var report = Evaluator.Report(DatasetSplits.Validation, logits, [0, 0, 1, 2], ["a", "b", "c", "d"], ["1.png", "2.png", "3.png", "4.png"]);

        Assert.Equal(["3.png", "2.png"], report.Misclassified.Select(m => m.Path));
        var second = report.Misclassified[1];
        Assert.Equal("a", second.Label);
        Assert.Equal(["b", "c", "a"], second.Top.Select(t => t.Class));
        var softmax = new[] { 0.0, 3, 1, 0 }.Select(Math.Exp).ToArray();
        Assert.Equal(softmax[1] / softmax.Sum(), second.Top[0].Probability, 5);
        Assert.True(second.Top.Zip(second.Top.Skip(1)).All(p => p.First.Probability >= p.Second.Probability));

        using var json = JsonDocument.Parse(report.ToJson());
        var listed = json.RootElement.GetProperty("misclassified")[0];
        Assert.Equal(("3.png", "b", "a"), (listed.GetProperty("path").GetString(), listed.GetProperty("label").GetString(),
            listed.GetProperty("top")[0].GetProperty("class").GetString()));
        Assert.Equal(3, listed.GetProperty("top").GetArrayLength());
    }

    [Fact]
    public void AThumbnailIsTheWholeImageOnASquarePng()
    {
        string path = Path.Combine(Path.GetTempPath(), $"thumbnail-{Guid.NewGuid():N}.png");
        // 40×10 red: padded, it fills the middle rows of a white square.
        using (var bitmap = new SkiaSharp.SKBitmap(40, 10))
        {
            bitmap.Erase(SkiaSharp.SKColors.Red);
            using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(path, data.ToArray());
        }
        try
        {
            using var thumbnail = SkiaSharp.SKBitmap.Decode(Thumbnail.Png(path, 32));
            Assert.Equal((32, 32), (thumbnail.Width, thumbnail.Height));
            Assert.Equal(SkiaSharp.SKColors.White, thumbnail.GetPixel(16, 2));
            Assert.Equal(SkiaSharp.SKColors.Red, thumbnail.GetPixel(16, 16));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void TopFiveIsGivenFromFiveClasses()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[,] { { 6, 5, 4, 3, 2, 1 }, { 6, 5, 4, 3, 2, 1 } });
        var report = Evaluator.Report(DatasetSplits.Validation, logits, [4, 5], ["a", "b", "c", "d", "e", "f"], ["x", "y"]);
        Assert.Equal(0, report.Top1Accuracy);
        Assert.Equal(0.5, report.Top5Accuracy);
    }
}
