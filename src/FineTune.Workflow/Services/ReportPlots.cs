using System.Globalization;
using FineTune.Core.Evaluation;
using FineTune.Core.Training;
using FineTune.Workflow.Orchestration;
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

    /// <summary>
    /// A sweep at a glance: one panel per swept parameter, each trial a point (its best epoch's metric against its value);
    /// numbers on a number axis (logarithmic when they span more than a factor of 20), other values as categories.
    /// </summary>
    public static byte[] Sweep(IReadOnlyList<TrialSummary> trials, string metricName, bool accuracy)
    {
        var scored = trials.Where(t => t.BestEpoch is not null).ToList();
        var keys = trials.SelectMany(t => t.Parameters.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var multiplot = new Multiplot();
        foreach (var key in keys)
        {
            var plot = new Plot();
            var ys = scored.Select(t => accuracy ? t.ValidationAccuracy!.Value : t.ValidationLoss!.Value).ToArray();
            var values = scored.Select(t => t.Parameters[key]).ToList();
            if (values.All(v => v.ValueKind == System.Text.Json.JsonValueKind.Number))
            {
                var xs = values.Select(v => v.GetDouble()).ToArray();
                bool log = xs.Length > 0 && xs.Min() > 0 && xs.Max() / xs.Min() > 20;
                Func<double, double> axis = log ? Math.Log10 : x => x;
                plot.Add.ScatterPoints(xs.Select(axis).ToArray(), ys).MarkerSize = 9;
                var distinct = xs.Distinct().Order().ToArray();
                if (distinct.Length <= 10)
                    plot.Axes.Bottom.SetTicks(distinct.Select(axis).ToArray(), distinct.Select(x => x.ToString("G4", CultureInfo.InvariantCulture)).ToArray());
                else if (log)
                    plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = x => Math.Pow(10, x).ToString("G3", CultureInfo.InvariantCulture) };
            }
            else
            {
                var labels = values.Select(v => v.ToString()).Distinct().Order(StringComparer.Ordinal).ToArray();
                plot.Add.ScatterPoints(values.Select(v => (double)Array.IndexOf(labels, v.ToString())).ToArray(), ys).MarkerSize = 9;
                plot.Axes.Bottom.SetTicks([.. Enumerable.Range(0, labels.Length).Select(i => (double)i)], labels);
            }
            plot.XLabel(key);
            plot.YLabel(metricName);
            if (key == keys[0])
            {
                plot.Title($"{metricName} of each trial's best epoch ({scored.Count} trials)");
                // A new multiplot holds one empty plot: this one takes its place.
                multiplot.Reset(plot);
            }
            else
            {
                multiplot.AddPlot(plot);
            }
        }
        using var image = multiplot.Render(640, 60 + 320 * Math.Max(1, keys.Count));
        return image.GetImageBytes(ImageFormat.Png);
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
