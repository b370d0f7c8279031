using Azure.Identity;
using Azure.Storage.Blobs;

namespace FineTune.Storage;

/// <summary>
/// Which artifact store to use, bound from configuration (section "Artifacts"): a blob container reached by
/// connection string (Azurite: <c>UseDevelopmentStorage=true</c>) or by account URL with
/// DefaultAzureCredential (managed identity, no keys), else a local folder.
/// </summary>
public sealed class ArtifactStoreOptions
{
    public const string SectionName = "Artifacts";

    public string? ConnectionString { get; set; }
    public Uri? AccountUrl { get; set; }
    public string ContainerName { get; set; } = "finetune";
    public string LocalRoot { get; set; } = ".finetune/artifacts";

    public IArtifactStore Create()
    {
        if (!string.IsNullOrWhiteSpace(ConnectionString))
            return new BlobArtifactStore(new BlobContainerClient(ConnectionString, ContainerName));
        if (AccountUrl is not null)
            return new BlobArtifactStore(new BlobServiceClient(AccountUrl, new DefaultAzureCredential()).GetBlobContainerClient(ContainerName));
        return new LocalFolderArtifactStore(LocalRoot);
    }
}
