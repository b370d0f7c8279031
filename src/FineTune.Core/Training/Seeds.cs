namespace FineTune.Core.Training;

/// <summary>Derives independent, process-stable seeds (HashCode is randomised per process, so it cannot serve).</summary>
public static class Seeds
{
    /// <summary>SplitMix64 over the parts, folded to a non-negative int.</summary>
    public static int Mix(params long[] parts)
    {
        ulong state = 0x9E3779B97F4A7C15;
        foreach (long part in parts)
        {
            state ^= (ulong)part;
            state += 0x9E3779B97F4A7C15;
            ulong z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            state = z ^ (z >> 31);
        }
        return (int)(state & int.MaxValue);
    }
}
