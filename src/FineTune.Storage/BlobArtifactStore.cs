using System.Runtime.CompilerServices;
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;

namespace FineTune.Storage;

/// <summary>Artifacts as block blobs in one container (Azure Storage or Azurite).</summary>
public sealed class BlobArtifactStore(BlobContainerClient container) : IArtifactStore
{
    private volatile bool _created;

    public string Location => container.Uri.ToString();

    public async Task WriteAsync(string name, Stream content, WriteMode mode, CancellationToken cancellationToken)
    {
        await EnsureContainerAsync(cancellationToken);
        var blob = container.GetBlobClient(ArtifactNames.Require(name));
        var options = new BlobUploadOptions
        {
            // The conditional create is the commit point of a checkpoint: of two writers, exactly one wins.
            Conditions = mode == WriteMode.CreateNew ? new BlobRequestConditions { IfNoneMatch = ETag.All } : null,
        };
        try
        {
            await blob.UploadAsync(content, options, cancellationToken);
        }
        catch (RequestFailedException e) when (mode == WriteMode.CreateNew && e.Status is 409 or 412)
        {
            throw new ArtifactExistsException(name, Location);
        }
    }

    public async Task<Stream> OpenReadAsync(string name, CancellationToken cancellationToken)
    {
        var blob = container.GetBlobClient(ArtifactNames.Require(name));
        try
        {
            var response = await blob.DownloadStreamingAsync(cancellationToken: cancellationToken);
            return response.Value.Content;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            throw new ArtifactNotFoundException(name, Location);
        }
    }

    public async Task<bool> ExistsAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            return await container.GetBlobClient(ArtifactNames.Require(name)).ExistsAsync(cancellationToken);
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return false;
        }
    }

    public async IAsyncEnumerable<ArtifactInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        prefix = ArtifactNames.RequirePrefix(prefix);
        if (!await container.ExistsAsync(cancellationToken)) yield break;
        var items = new List<ArtifactInfo>();
        await foreach (var item in container.GetBlobsAsync(BlobTraits.None, BlobStates.None, prefix, cancellationToken))
            items.Add(new ArtifactInfo(item.Name, item.Properties.ContentLength ?? 0, item.Properties.LastModified ?? default));
        foreach (var item in items.OrderBy(i => i.Name, StringComparer.Ordinal)) yield return item;
    }

    public async Task<bool> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            return await container.GetBlobClient(ArtifactNames.Require(name)).DeleteIfExistsAsync(cancellationToken: cancellationToken);
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return false;
        }
    }

    /// <remarks>No lock: creating is idempotent, so first writers racing here cost at most a redundant call each.</remarks>
    private async Task EnsureContainerAsync(CancellationToken cancellationToken)
    {
        if (_created) return;
        await container.CreateIfNotExistsAsync(cancellationToken: cancellationToken);
        _created = true;
    }
}
