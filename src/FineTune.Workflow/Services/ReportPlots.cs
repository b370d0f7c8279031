using System.Globalization;
using FineTune.Core.Evaluation;
using FineTune.Core.Training;
using ScottPlot;

namespace FineTune.Workflow.Services;

/// <summary>The report's pictures: loss and accuracy per epoch, and the confusion matrix, as PNG.</summary>
public static class ReportPlots
{
    public static byte[] Loss(IReadOnlyList<EpochMetrics> history) =>
        Curves(history, "Loss", h => h.TrainLoss, h => h.ValidationLoss);

    public static byte[] Accuracy(IReadOnlyList<EpochMetrics> history) =>
        Curves(history, "Top-1 accuracy", h => h.TrainAccuracy, h => h.ValidationAccuracy);

    public static byte[] Confusion(EvaluationReport report)
    {
        int n = report.Classes.Count;
        // Row 0 of a heatmap is drawn at the top: true classes top to bottom, predictions left to right.
        var counts = new double[n, n];
        for (int t = 0; t < n; t++)
            for (int p = 0; p < n; p++) counts[t, p] = report.ConfusionMatrix[t][p];
        var plot = new Plot();
        double max = Math.Max(1, report.ConfusionMatrix.Max(row => row.Max()));
        // Blues runs from dark (low) to light (high); counts read best light (few) to dark (many), so it is fed max − count.
        var shades = new double[n, n];
        for (int t = 0; t < n; t++)
            for (int p = 0; p < n; p++) shades[t, p] = max - counts[t, p];
        plot.Add.Heatmap(shades).Colormap = new ScottPlot.Colormaps.Blues();
        for (int t = 0; t < n; t++)
            for (int p = 0; p < n; p++)
            {
                var label = plot.Add.Text(counts[t, p].ToString("0", CultureInfo.InvariantCulture), p, n - 1 - t);
                label.LabelAlignment = Alignment.MiddleCenter;
                label.LabelFontSize = 14;
                label.LabelFontColor = counts[t, p] > max / 2 ? Colors.White : Colors.Black;
            }
        var ticks = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.SetTicks(ticks, report.Classes.ToArray());
        plot.Axes.Left.SetTicks(ticks, report.Classes.Reverse().ToArray());
        plot.XLabel("predicted");
        plot.YLabel("true");
        plot.Title($"Confusion matrix, top-1 {report.Top1Accuracy:P1} of {report.Count}");
        return plot.GetImageBytes(120 + 90 * n, 100 + 90 * n, ImageFormat.Png);
    }

    private static byte[] Curves(IReadOnlyList<EpochMetrics> history, string title, Func<EpochMetrics, double> train, Func<EpochMetrics, double> validation)
    {
        var epochs = history.Select(h => h.Epoch + 1.0).ToArray();
        var plot = new Plot();
        plot.Add.Scatter(epochs, history.Select(train).ToArray()).LegendText = "train";
        plot.Add.Scatter(epochs, history.Select(validation).ToArray()).LegendText = "validation";
        plot.Title(title);
        plot.XLabel("epoch");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        plot.ShowLegend();
        return plot.GetImageBytes(640, 400, ImageFormat.Png);
    }
}
