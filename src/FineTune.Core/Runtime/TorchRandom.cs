namespace FineTune.Core.Runtime;

/// <summary>
/// Torch's default generator is process-wide: weight initialisation and dropout draw from it after
/// <c>manual_seed</c>. Two threads seeding and drawing at once would interleave and make each other's runs
/// irreproducible, so every seeded section (building a model, a training step) holds this gate.
/// </summary>
public static class TorchRandom
{
    public static readonly Lock Gate = new();
}
