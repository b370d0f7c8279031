using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Training;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Training;

/// <summary>The head's convex optimum is the one PyTorch's own L-BFGS (strong-Wolfe line search) reaches on the same objective.</summary>
public sealed class HeadSolverTests
{
    private const int Classes = 4, Features = 24;

    /// <summary>
    /// More rows than one chunk holds, so the sum over chunks is checked against PyTorch's mean over all rows; class
    /// weights (classes of unequal size) and label smoothing, as a recipe may set them.
    /// </summary>
    [Theory]
    [InlineData(0.01, 0.0, false)]
    [InlineData(0.1, 0.1, true)]
    [InlineData(0.0001, 0.0, true)]
    public void TheOptimumIsPyTorchs(double weightDecay, double labelSmoothing, bool classWeighted)
    {
        var (rows, labels) = Rows(5000);
        var options = new TrainingOptions { LabelSmoothing = labelSmoothing, ClassWeightedLoss = classWeighted };
        using var scope = NewDisposeScope();
        var ours = HeadSolver.Solve(FeatureRows.Of(rows), labels, Classes, options, weightDecay, null, default);

        string input = Path.Combine(Path.GetTempPath(), $"head-solver-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(input, JsonSerializer.Serialize(new
            {
                features = Enumerable.Range(0, labels.Length).Select(i => rows[i].data<float>().ToArray()),
                labels,
                classes = Classes,
                labelSmoothing,
                classWeighted,
                weightDecay,
            }));
            var reference = JsonNode.Parse(PythonReference.RunScript(Path.Combine(AppContext.BaseDirectory, "Reference", "head_solver_reference.py"), input))!;
            double[] expected = [.. reference["weight"]!.AsArray().SelectMany(row => row!.AsArray().Select(v => v!.GetValue<double>())),
                .. reference["bias"]!.AsArray().Select(v => v!.GetValue<double>())];
            double[] actual = ours;
            // The objective is flat near its optimum: the losses agree far closer than the weights.
            double largest = expected.Max(Math.Abs);
            double difference = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
            Assert.True(difference <= 1e-3 * Math.Max(1, largest), $"largest weight {largest:g4}, largest difference {difference:g4}");
            double expectedLoss = reference["loss"]!.GetValue<double>();
            double actualLoss = Objective(rows, labels, actual, labelSmoothing, classWeighted, weightDecay);
            Assert.True(Math.Abs(actualLoss - expectedLoss) <= 1e-7 * expectedLoss, $"loss {actualLoss:R}, PyTorch's {expectedLoss:R}");
        }
        finally
        {
            File.Delete(input);
        }
    }

    /// <summary>A retried evaluation must publish the same bytes: the solve reads no clock, no thread timing, no seed.</summary>
    [Fact]
    public void SolvingAgainGivesTheSameBytes()
    {
        var (rows, labels) = Rows(300);
        using var scope = NewDisposeScope();
        var options = new TrainingOptions { LabelSmoothing = 0.1 };
        var first = HeadSolver.Solve(FeatureRows.Of(rows), labels, Classes, options, 0.003, null, default);
        var second = HeadSolver.Solve(FeatureRows.Of(rows), labels, Classes, options, 0.003, null, default);
        Assert.Equal(first, second);
    }

    /// <summary>The objective at a head, computed here as PyTorch's script does.</summary>
    private static double Objective(Tensor rows, int[] labels, double[] head, double labelSmoothing, bool classWeighted, double weightDecay)
    {
        using var scope = NewDisposeScope();
        var x = rows.to(float64);
        var weight = tensor(head[..(Classes * Features)]).view(Classes, Features);
        var bias = tensor(head[(Classes * Features)..]);
        var counts = new double[Classes];
        foreach (int label in labels) counts[label]++;
        var classWeights = classWeighted ? tensor(counts.Select(c => labels.Length / (Classes * c)).ToArray()) : null;
        var loss = nn.functional.cross_entropy(x.matmul(weight.t()) + bias, tensor(labels.Select(l => (long)l).ToArray()), weight: classWeights,
            label_smoothing: labelSmoothing) + weightDecay / 2 * weight.square().sum();
        return loss.item<double>();
    }

    /// <summary>Overlapping classes (no separating head, so a finite optimum even at small weight decay), of unequal sizes.</summary>
    private static (Tensor Rows, int[] Labels) Rows(int count)
    {
        var random = new Random(7);
        int[] labels = [.. Enumerable.Range(0, count).Select(_ => random.NextDouble() < 0.4 ? 0 : random.Next(1, Classes))];
        var centres = new float[Classes, Features];
        for (int c = 0; c < Classes; c++)
            for (int f = 0; f < Features; f++) centres[c, f] = (float)(random.NextDouble() * 2 - 1);
        var data = new float[count * Features];
        for (int i = 0; i < count; i++)
            for (int f = 0; f < Features; f++)
                data[i * Features + f] = centres[labels[i], f] + (float)(random.NextDouble() * 4 - 2);
        return (tensor(data).view(count, Features), labels);
    }
}
