using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using FineTune.Core.Data;
using FineTune.Core.Models;
using static TorchSharp.torch;

namespace FineTune.Core.Evaluation;

public sealed record ClassProbability(string Class, double Probability);

/// <summary>One image's answer: its top classes, most probable first, or why it could not be read.</summary>
public sealed record ImageOutcome(string Image, IReadOnlyList<ClassProbability>? Classes, string? Error = null);

/// <summary>A published fine-tuned model, loaded for classifying images, a batch per forward.</summary>
public sealed class Predictor : IDisposable
{
    /// <summary>Images per forward unless the caller says otherwise: the evaluation step's batch.</summary>
    public const int DefaultBatchSize = 16;

    private readonly FineTuneModel _model;
    private readonly Preprocessing _preprocessing;

    private Predictor(FineTuneModel model, Preprocessing preprocessing, IReadOnlyList<string> classes)
    {
        _model = model;
        _preprocessing = preprocessing;
        Classes = classes;
    }

    public IReadOnlyList<string> Classes { get; }

    /// <param name="weightsPath">the whole model's state dict (<see cref="FineTuneModel.Load"/>)</param>
    /// <param name="preprocessing">the input the model was trained on (its model card's)</param>
    public static Predictor Load(ModelFamily family, IReadOnlyList<string> classes, string weightsPath, Preprocessing preprocessing)
    {
        var model = FineTuneModel.Load(family.For(preprocessing), classes.Count, weightsPath);
        // Only ever runs forward: fused, each prediction costs about a third less.
        model.FuseForInference();
        return new(model, preprocessing, classes);
    }

    /// <summary>The <paramref name="top"/> most probable classes of the image, most probable first.</summary>
    /// <exception cref="InvalidImageException">the file is not a usable image</exception>
    public IReadOnlyList<ClassProbability> Predict(string imagePath, int top) => PredictBatch([imagePath], top)[0];

    /// <summary>Each image's top classes, all in one forward; the first unusable image throws.</summary>
    /// <exception cref="InvalidImageException">an image is not a usable image</exception>
    public IReadOnlyList<IReadOnlyList<ClassProbability>> PredictBatch(IReadOnlyList<string> imagePaths, int top)
    {
        var batch = Prepare(imagePaths);
        if (batch.Errors.Count > 0) ExceptionDispatchInfo.Throw(batch.Errors[0].Exception);
        return Classify(batch, top).Select(o => o.Classes!).ToList();
    }

    /// <summary>
    /// Every image's outcome, in order, as they are classified: <paramref name="batchSize"/> images per forward while the next
    /// batch is decoded. At most two batches of inputs are held, whatever the number of images; an unusable image is an
    /// outcome with its error.
    /// </summary>
    public IEnumerable<ImageOutcome> PredictAll(IEnumerable<string> imagePaths, int top, int batchSize = DefaultBatchSize, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        using var images = imagePaths.GetEnumerator();
        var next = Task.Run(() => Prepare(Take(images, batchSize)), cancellationToken);
        try
        {
            while (true)
            {
                var batch = next.GetAwaiter().GetResult();
                if (batch.Paths.Count == 0) yield break;
                cancellationToken.ThrowIfCancellationRequested();
                // The enumerator is only ever read by the one preparing task, never at the same time.
                next = Task.Run(() => Prepare(Take(images, batchSize)), cancellationToken);
                foreach (var outcome in Classify(batch, top)) yield return outcome;
            }
        }
        finally
        {
            // A caller that stops early: the preparing task still reads the enumerator, which is disposed after this.
            try
            {
                next.Wait(CancellationToken.None);
            }
            catch (AggregateException)
            {
                // Its batch is not wanted; neither is its failure.
            }
        }
    }

    private static List<string> Take(IEnumerator<string> images, int count)
    {
        var paths = new List<string>(count);
        while (paths.Count < count && images.MoveNext()) paths.Add(images.Current);
        return paths;
    }

    /// <summary>Decoded inputs of a batch's usable images, in order, [usable, 3, crop, crop] as floats; the others' errors.</summary>
    private sealed record PreparedBatch(IReadOnlyList<string> Paths, float[] Inputs, IReadOnlyList<(int Index, Exception Exception)> Errors);

    private PreparedBatch Prepare(IReadOnlyList<string> paths)
    {
        int length = ImageLoader.InputLength(_preprocessing);
        var inputs = new float[paths.Count * length];
        var errors = new ConcurrentBag<(int, Exception)>();
        // Decoding is the CPU-bound part: spread over the cores, as training's batches are.
        try
        {
            Parallel.For(0, paths.Count, i =>
            {
                try
                {
                    ImageLoader.Fill(ImageLoader.Fit(ImageLoader.Decode(paths[i]), _preprocessing), _preprocessing, inputs.AsSpan(i * length, length));
                }
                catch (Exception e) when (e is InvalidImageException or IOException or UnauthorizedAccessException)
                {
                    errors.Add((i, e));
                }
            });
        }
        catch (AggregateException e)
        {
            ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }
        if (errors.IsEmpty) return new(paths, inputs, []);
        // The unusable images' slots are left out of the forward.
        var failed = errors.OrderBy(e => e.Item1).ToList();
        var usable = Enumerable.Range(0, paths.Count).Except(failed.Select(e => e.Item1)).ToList();
        var packed = new float[usable.Count * length];
        for (int k = 0; k < usable.Count; k++) inputs.AsSpan(usable[k] * length, length).CopyTo(packed.AsSpan(k * length, length));
        return new(paths, packed, failed);
    }

    private List<ImageOutcome> Classify(PreparedBatch batch, int top)
    {
        var outcomes = new ImageOutcome?[batch.Paths.Count];
        foreach (var (index, exception) in batch.Errors)
            outcomes[index] = new ImageOutcome(batch.Paths[index], null, exception is InvalidImageException invalid ? invalid.Reason : exception.Message);
        int usable = batch.Paths.Count - batch.Errors.Count;
        if (usable > 0)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            int crop = _preprocessing.CropSize, k = Math.Min(top, Classes.Count);
            var probabilities = nn.functional.softmax(_model.Forward(tensor(batch.Inputs, [usable, 3, crop, crop])), 1).cpu();
            var (values, indices) = probabilities.topk(k, 1);
            var p = values.data<float>().ToArray();
            var c = indices.data<long>().ToArray();
            int row = 0;
            for (int i = 0; i < outcomes.Length; i++)
            {
                if (outcomes[i] is not null) continue;
                outcomes[i] = new ImageOutcome(batch.Paths[i], Enumerable.Range(row * k, k).Select(j => new ClassProbability(Classes[(int)c[j]], p[j])).ToList());
                row++;
            }
        }
        return [.. outcomes.Select(o => o!)];
    }

    public void Dispose() => _model.Dispose();
}
