using Xunit;

namespace FineTune.Testing;

/// <summary>
/// A test that passes run alone (and did in CI) but failed in some of CI's runs, where the solution's test projects run
/// in parallel processes, each with in-process Durable Task hosts on free loopback ports: the suspected cause, not yet
/// shown. Such tests run only with FINETUNE_SERIAL_TESTS=1 (e.g. <c>FINETUNE_SERIAL_TESTS=1 dotnet test tests/X</c>)
/// until it is understood.
/// </summary>
public sealed class SerialOnlyFactAttribute : FactAttribute
{
    public const string Variable = "FINETUNE_SERIAL_TESTS";

    public SerialOnlyFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1")
            Skip = $"set {Variable}=1 to run it (flaky among CI's parallel test processes)";
    }
}
