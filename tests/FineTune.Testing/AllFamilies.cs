using FineTune.Core.Models;
using Xunit;

namespace FineTune.Testing;

/// <summary>Tests over every model family run only with FINETUNE_ALL_FAMILIES=1: the large ones take minutes more than CI has.</summary>
public static class AllFamilies
{
    public const string Variable = "FINETUNE_ALL_FAMILIES";

    public static bool Enabled => Environment.GetEnvironmentVariable(Variable) == "1";

    /// <summary>
    /// Of <paramref name="builders"/>: all with <see cref="Variable"/>=1; otherwise the smallest of each architecture (by
    /// torchvision's parameter count), so the time CI spends grows with the families, not with their 80 builders.
    /// </summary>
    public static IEnumerable<ModelFamily> OnePerArchitecture(IEnumerable<ModelFamily> builders) =>
        Enabled ? builders : builders.GroupBy(b => b.Architecture).Select(g => g.MinBy(b => b.Weights.Count > 0 ? b.Weights.Min(w => w.NumParams) : long.MaxValue)!);
}

/// <summary>A theory run only with <see cref="AllFamilies.Variable"/>=1.</summary>
public sealed class AllFamiliesTheoryAttribute : TheoryAttribute
{
    public AllFamiliesTheoryAttribute()
    {
        if (!AllFamilies.Enabled)
            Skip = $"set {AllFamilies.Variable}=1 to run every family";
    }
}
