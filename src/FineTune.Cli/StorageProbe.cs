namespace FineTune.Cli;

/// <summary>Checks a storage account answers before a run relies on it.</summary>
internal static class StorageProbe
{
    /// <summary>Why the storage account cannot be used, found in seconds rather than after the SDKs' long retries; null when it answers.</summary>
    public static async Task<string?> UnreachableAsync(string connectionString, CancellationToken cancellationToken)
    {
        try
        {
            var options = new Azure.Storage.Blobs.BlobClientOptions { Retry = { MaxRetries = 1, NetworkTimeout = TimeSpan.FromSeconds(5) } };
            var client = new Azure.Storage.Blobs.BlobServiceClient(connectionString, options);
            try
            {
                await client.GetPropertiesAsync(cancellationToken);
                return null;
            }
            catch (Exception e) when (e is Azure.RequestFailedException or HttpRequestException or TaskCanceledException or AggregateException)
            {
                return $"cannot reach {client.Uri}: {(e.InnerException ?? e).Message.Split('\n')[0].Trim()}";
            }
        }
        catch (FormatException e)
        {
            return $"not a storage connection string: {e.Message}";
        }
    }
}
