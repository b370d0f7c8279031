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

    /// <summary>Classes up to which the whole matrix is drawn (90 px a class: 2,820 px square at most).</summary>
    public const int MaxMatrixClasses = 30;

    /// <summary>Confusions listed when there are too many classes for a matrix.</summary>
    public const int TopConfusions = 20;

    /// <summary>
    /// The confusion matrix, counts in every cell, for up to <see cref="MaxMatrixClasses"/> classes; beyond that a
    /// matrix would be unreadable and huge (1,000 classes: 90,000 px a side), so the
    /// <see cref="TopConfusions"/> most frequent mistakes are drawn as bars instead.
    /// </summary>
    public static byte[] Confusion(EvaluationReport report) =>
        report.Classes.Count <= MaxMatrixClasses ? Matrix(report) : MostConfused(report);

    private static byte[] MostConfused(EvaluationReport report)
    {
        var confusions = new List<(int Count, string Label)>();
        for (int t = 0; t < report.Classes.Count; t++)
            for (int p = 0; p < report.Classes.Count; p++)
                if (t != p && report.ConfusionMatrix[t][p] > 0)
                    confusions.Add((report.ConfusionMatrix[t][p], $"{report.Classes[t]} → {report.Classes[p]}"));
        var top = confusions.OrderByDescending(c => c.Count).ThenBy(c => c.Label, StringComparer.Ordinal).Take(TopConfusions).ToList();
        var plot = new Plot();
        // Bars top to bottom, most frequent first.
        for (int i = 0; i < top.Count; i++)
            plot.Add.Bar(new Bar { Position = top.Count - 1 - i, Value = top[i].Count, Orientation = Orientation.Horizontal });
        plot.Axes.Left.SetTicks(Enumerable.Range(0, top.Count).Select(i => (double)(top.Count - 1 - i)).ToArray(), top.Select(c => c.Label).ToArray());
        plot.XLabel("images (true → predicted)");
        plot.Title($"Top {top.Count} confusions of {report.Classes.Count} classes, top-1 {report.Top1Accuracy:P1} of {report.Count}");
        return plot.GetImageBytes(1000, 160 + 30 * Math.Max(1, top.Count), ImageFormat.Png);
    }

    private static byte[] Matrix(EvaluationReport report)
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
