using System.Reflection;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Orchestration;

/// <summary>What a durable failure's exception type is, asked by its name as the framework records it.</summary>
internal static class FailureTypes
{
    /// <summary>
    /// <see cref="TaskFailureDetails.IsCausedBy{T}"/> (the recorded type or a subclass of <typeparamref name="T"/>), except for
    /// a framework type outside CoreLib (SocketException, HttpRequestException): IsCausedBy finds it again in every loaded
    /// facade that forwards it (System.Net.Sockets, System, netstandard) and throws AmbiguousMatchException. None of
    /// the types asked about here is forwarded, so such a failure is none of them.
    /// </summary>
    public static bool Is<T>(TaskFailureDetails failure) where T : Exception
    {
        try
        {
            return failure.IsCausedBy<T>();
        }
        catch (AmbiguousMatchException)
        {
            return false;
        }
    }
}
