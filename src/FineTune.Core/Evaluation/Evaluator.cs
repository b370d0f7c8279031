using FineTune.Core.Data;
using FineTune.Core.Models;
using static TorchSharp.torch;

namespace FineTune.Core.Evaluation;

/// <summary>The "evaluate" step: a model's logits on a labelled set, turned into an <see cref="EvaluationReport"/>.</summary>
public static class Evaluator
{
    /// <summary>Logits [N, classes] of every image, in eval mode; from cached features (what the model's boundary receives) when given.</summary>
    public static Tensor Logits(FineTuneModel model, IImageSource source, int batchSize, CancellationToken cancellationToken, Training.FeatureRows? features = null)
    {
        model.EvalMode();
        using var _ = no_grad();
        // Every batch allocates the same activations: reused, not mapped and zeroed anew each time.
        using var reuse = Runtime.GlibcMalloc.ReuseLargeBlocks();
        var batches = new List<Tensor>();
        for (int start = 0; start < source.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            int end = Math.Min(source.Count, start + batchSize);
            var logits = features is not null
                ? model.FromBoundary(features.Range(start, end).to(model.Device))
                : model.Forward(source.Range(start, end));
            batches.Add(logits.cpu().MoveToOuterDisposeScope());
        }
        var all = cat(batches, 0);
        foreach (var batch in batches) batch.Dispose();
        return all;
    }

    /// <param name="split">the set the logits are of: <see cref="DatasetSplits.Validation"/> or <see cref="DatasetSplits.Test"/></param>
    public static EvaluationReport Report(string split, Tensor logits, IReadOnlyList<int> labels, IReadOnlyList<string> classes, IReadOnlyList<string> paths)
    {
        using var scope = NewDisposeScope();
        int n = labels.Count, c = classes.Count;
        var target = tensor(labels.Select(l => (long)l).ToArray());
        double loss = nn.functional.cross_entropy(logits, target).item<float>();
        var probabilities = nn.functional.softmax(logits, 1);
        int k = Math.Min(5, c);
        var (topValues, topIndices) = probabilities.topk(k, 1);
        var top = topIndices.data<long>().ToArray();
        var confidence = topValues.data<float>().ToArray();

        var confusion = new int[c][];
        for (int i = 0; i < c; i++) confusion[i] = new int[c];
        int top1 = 0, top5 = 0;
        var predictions = new List<Prediction>(n);
        var mistakes = new List<MisclassifiedImage>();
        for (int i = 0; i < n; i++)
        {
            int predicted = (int)top[i * k];
            confusion[labels[i]][predicted]++;
            if (predicted == labels[i]) top1++;
            var ranked = top.Skip(i * k).Take(k).Select(t => (int)t).ToList();
            if (ranked.Contains(labels[i])) top5++;
            predictions.Add(new Prediction(paths[i], classes[labels[i]], classes[predicted], confidence[i * k], ranked.Select(r => classes[r]).ToList()));
            if (predicted != labels[i])
                mistakes.Add(new MisclassifiedImage(paths[i], classes[labels[i]],
                    [.. ranked.Take(EvaluationReport.MisclassifiedTop).Select((r, j) => new ClassProbability(classes[r], confidence[i * k + j]))]));
        }

        var perClass = Enumerable.Range(0, c).Select(j =>
        {
            int truePositive = confusion[j][j];
            int predictedJ = Enumerable.Range(0, c).Sum(i => confusion[i][j]);
            int actualJ = confusion[j].Sum();
            double precision = predictedJ == 0 ? 0 : (double)truePositive / predictedJ;
            double recall = actualJ == 0 ? 0 : (double)truePositive / actualJ;
            double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            return new ClassMetrics(classes[j], precision, recall, f1, actualJ);
        }).ToList();

        return new EvaluationReport(split, n, loss, (double)top1 / n, c >= 5 ? (double)top5 / n : null, classes, perClass,
            confusion.Select(row => (IReadOnlyList<int>)row).ToList(), predictions)
        {
            Misclassified = [.. mistakes.OrderByDescending(m => m.Top[0].Probability).Take(EvaluationReport.MaxMisclassified)],
        };
    }
}
