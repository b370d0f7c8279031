namespace FineTune.Workflow.Services;

/// <summary>Names the process an activity ran in, so a sweep can tell which worker trained which trial.</summary>
public static class WorkerIdentity
{
    public static string Current { get; } = $"{Environment.MachineName}/{Environment.ProcessId}";
}
