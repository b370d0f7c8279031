using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using Microsoft.Azure.Functions.Worker;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.Logging;

namespace FineTune.Functions;

/// <summary>
/// Uploading a job spec to the <c>finetune-jobs</c> container starts a run. The instance id derives from the
/// blob name, so the trigger firing again for the same blob (it does on every ETag change) starts nothing new.
/// </summary>
public sealed partial class FineTuneBlobTrigger(RunControl runs, ILogger<FineTuneBlobTrigger> logger)
{
    public const string Container = "finetune-jobs";

    [Function("StartFineTuneFromBlob")]
    public async Task Run(
        [BlobTrigger(Container + "/{name}", Connection = "AzureWebJobsStorage")] string content,
        string name,
        [DurableClient] DurableTaskClient client,
        CancellationToken cancellationToken)
    {
        JobSpec spec;
        try
        {
            spec = JobSpecReader.Read(content, localPaths: false) with { JobId = InstanceId(name) };
        }
        catch (InvalidJobSpecException e)
        {
            InvalidSpec(name, string.Join("; ", e.Errors));
            return;
        }
        StartOutcome outcome;
        try
        {
            outcome = await new DurableClientScheduler(client).StartAsync(spec, runs, cancellationToken);
        }
        catch (SpecConflictException e)
        {
            InvalidSpec(name, e.Message);
            return;
        }
        if (outcome.Started) Started(name, outcome.JobId);
        else AlreadyStarted(name, outcome.JobId, outcome.ExistingStatus);
    }

    /// <summary>"blob-", the name made id-safe, and a hash of the exact name (so distinct names never collide).</summary>
    public static string InstanceId(string blobName)
    {
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(blobName)))[..8];
        string readable = Unsafe().Replace(blobName.ToLowerInvariant(), "-").Trim('-');
        if (readable.Length > 45) readable = readable[..45].TrimEnd('-');
        return readable.Length == 0 ? $"blob-{hash}" : $"blob-{readable}-{hash}";
    }

    [GeneratedRegex("[^a-z0-9]+")]
    private static partial Regex Unsafe();

    [LoggerMessage(Level = LogLevel.Error, Message = "Job blob {Name} is not a valid job spec: {Errors}")]
    private partial void InvalidSpec(string name, string errors);

    [LoggerMessage(Level = LogLevel.Information, Message = "Job blob {Name} started run {Id}")]
    private partial void Started(string name, string id);

    [LoggerMessage(Level = LogLevel.Information, Message = "Job blob {Name} already started run {Id} ({Status}); nothing to do")]
    private partial void AlreadyStarted(string name, string id, string? status);
}
