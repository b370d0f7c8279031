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
    public void TopFiveIsGivenFromFiveClasses()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[,] { { 6, 5, 4, 3, 2, 1 }, { 6, 5, 4, 3, 2, 1 } });
        var report = Evaluator.Report(DatasetSplits.Validation, logits, [4, 5], ["a", "b", "c", "d", "e", "f"], ["x", "y"]);
        Assert.Equal(0, report.Top1Accuracy);
        Assert.Equal(0.5, report.Top5Accuracy);
    }
}
