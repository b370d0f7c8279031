using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
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

    /// <summary>
    /// Bound to the blob's client, not its content: a content binding reads the whole blob into memory (and sends it to
    /// this worker) before any code runs. The length is checked first and at most <see cref="JobSpecReader.MaxBytes"/>
    /// + 1 bytes are read, so a blob that grew since is refused too.
    /// </summary>
    [Function("StartFineTuneFromBlob")]
    public async Task Run(
        [BlobTrigger(Container + "/{name}", Connection = "AzureWebJobsStorage")] BlobClient blob,
        string name,
        [DurableClient] DurableTaskClient client,
        CancellationToken cancellationToken)
    {
        JobSpec spec;
        try
        {
            string content = await ReadCappedAsync(blob, cancellationToken) ?? throw new InvalidJobSpecException(
                [new FieldError("$", $"the job blob is over {JobSpecReader.MaxBytes} bytes")]);
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

    /// <summary>The blob as text; null when it is over <see cref="JobSpecReader.MaxBytes"/> bytes, read no further than one byte past them.</summary>
    public static async Task<string?> ReadCappedAsync(BlobClient blob, CancellationToken cancellationToken)
    {
        if ((await blob.GetPropertiesAsync(cancellationToken: cancellationToken)).Value.ContentLength > JobSpecReader.MaxBytes) return null;
        var download = await blob.DownloadStreamingAsync(new BlobDownloadOptions { Range = new HttpRange(0, JobSpecReader.MaxBytes + 1) }, cancellationToken);
        await using var stream = download.Value.Content;
        var buffer = new byte[JobSpecReader.MaxBytes + 1];
        int read = await stream.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken);
        return read > JobSpecReader.MaxBytes ? null : Encoding.UTF8.GetString(buffer, 0, read);
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
