using FineTune.Core;
using FineTune.Core.Data;
using FineTune.Storage;

namespace FineTune.Workflow.Services;

/// <summary>Copies a <c>blob:</c> dataset from the users' uploads into a run's local scratch, once.</summary>
internal sealed class DatasetCopy(UserUploads uploads)
{
    /// <summary>
    /// Copies dataset <paramref name="name"/> into <paramref name="root"/>: every blob under a prefix, one .zip, or a manifest with the
    /// blobs its rows name under the manifest's own prefix. Each name is checked before it becomes a local path. Returns the local
    /// folder or file to load.
    /// </summary>
    public async Task<string> MaterialiseAsync(string root, string name, CancellationToken cancellationToken)
    {
        string done = Path.Combine(root, ".complete");
        bool single = !name.EndsWith('/');
        string target = single ? Path.Combine(root, Path.GetFileName(name)) : root;
        if (File.Exists(done)) return target;
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        Directory.CreateDirectory(root);
        if (single)
        {
            if (!await CopyBlobAsync(name, root, Path.GetFileName(name), cancellationToken))
                throw new InvalidDatasetException($"dataset blob '{name}' does not exist");
            if (ManifestSource.IsManifest(name))
            {
                string folder = name[..(name.LastIndexOf('/') + 1)];
                // A row whose blob is missing stays missing: the scan reports it by name like any unusable file.
                foreach (var file in ManifestSource.Files(target, BlobReference.To(name)))
                    await CopyBlobAsync(folder + file, root, file, cancellationToken);
            }
        }
        else
        {
            await foreach (var item in uploads.Store.ListAsync(name, cancellationToken))
                await CopyBlobAsync(item.Name, root, item.Name[name.Length..], cancellationToken);
        }
        await File.WriteAllTextAsync(done, name, cancellationToken);
        return target;
    }

    /// <summary>Copies blob <paramref name="name"/> to <paramref name="relative"/> under <paramref name="root"/>; false when there is no such blob.</summary>
    private async Task<bool> CopyBlobAsync(string name, string root, string relative, CancellationToken cancellationToken)
    {
        try
        {
            ArtifactNames.Require(name);
            ArtifactNames.Require(relative);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDatasetException($"blob '{name}' cannot be part of a dataset: {e.Message.Split(" (Parameter", 2)[0]}");
        }
        string path = Path.Combine(root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        try
        {
            await using var input = await uploads.Store.OpenReadAsync(name, cancellationToken);
            await using var output = File.Create(path);
            await input.CopyToAsync(output, cancellationToken);
            return true;
        }
        catch (ArtifactNotFoundException)
        {
            File.Delete(path);
            return false;
        }
    }
}
