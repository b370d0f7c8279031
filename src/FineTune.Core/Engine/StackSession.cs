using FineTune.Core.Training;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Engine;

/// <summary>A stack of a sweep's trials held between epochs (<see cref="FineTuneEngine.OpenStack"/>): train, then take its state.</summary>
public sealed class StackSession : IDisposable
{
    private readonly StackedHeads _stack;

    internal StackSession(StackedHeads stack) => _stack = stack;

    /// <summary>
    /// Trains to the end of epoch <paramref name="untilEpoch"/>; members in <paramref name="exclude"/> stay where they are.
    /// False when <paramref name="stopRequested"/> said so: the epoch under way is dropped, the state keeps the ones before.
    /// </summary>
    public bool Train(int untilEpoch, IReadOnlySet<int> exclude, Func<bool>? stopRequested, CancellationToken cancellationToken) =>
        _stack.Train(untilEpoch, exclude, cancellationToken, stopRequested);

    /// <summary>Every member's tensors and progress, for a checkpoint.</summary>
    public StackState State()
    {
        using var scope = NewDisposeScope();
        using var stream = new MemoryStream();
        StateDictFile.Write(_stack.State(), stream, StateDictFormat.Safetensors);
        return new StackState(stream.ToArray(), [.. Enumerable.Range(0, _stack.Count).Select(_stack.ProgressOf)]);
    }

    public void Dispose() => _stack.Dispose();
}
