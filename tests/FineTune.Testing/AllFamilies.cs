using Xunit;

namespace FineTune.Testing;

/// <summary>Tests over every model family run only with FINETUNE_ALL_FAMILIES=1: the large ones take minutes more than CI has.</summary>
public static class AllFamilies
{
    public const string Variable = "FINETUNE_ALL_FAMILIES";

    public static bool Enabled => Environment.GetEnvironmentVariable(Variable) == "1";
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
