namespace FineTune.Core.Models;

/// <summary>
/// What stays trainable: <c>head</c> (the seed recipe: only the new classifier), <c>last:N</c> (the last N
/// stages and the head), or <c>full</c>.
/// </summary>
public readonly record struct FreezeMode(int TrainableStages)
{
    public static FreezeMode Head => new(0);
    public static FreezeMode Full => new(int.MaxValue);
    public static FreezeMode Last(int stages) => stages >= 1
        ? new(stages)
        : throw new ArgumentOutOfRangeException(nameof(stages), stages, "last:N needs N >= 1");

    public static FreezeMode Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text == "head") return Head;
        if (text == "full") return Full;
        if (text.StartsWith("last:", StringComparison.Ordinal) && int.TryParse(text.AsSpan(5), out int n) && n >= 1)
            return Last(n);
        throw new FormatException($"freeze mode '{text}' is not one of: head, last:N (N >= 1), full");
    }

    public override string ToString() => TrainableStages switch
    {
        0 => "head",
        int.MaxValue => "full",
        var n => $"last:{n}",
    };
}
