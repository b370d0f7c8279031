using System.Net.Sockets;
using Azure.Storage.Blobs;

namespace FineTune.Testing;

/// <summary>The real Azurite that .ci/run starts on 127.0.0.1 (blob 10000, queue 10001, table 10002).</summary>
public static class Azurite
{
    public const string ConnectionString = "UseDevelopmentStorage=true";

    /// <summary>A fresh, uniquely named container, so tests never see each other's blobs.</summary>
    public static BlobContainerClient NewContainer()
    {
        RequireRunning();
        return new BlobContainerClient(ConnectionString, "test-" + Guid.NewGuid().ToString("N"));
    }

    public static void RequireRunning()
    {
        try
        {
            using var client = new TcpClient();
            client.Connect("127.0.0.1", 10000);
        }
        catch (SocketException)
        {
            throw new InvalidOperationException(
                "Azurite is not running on 127.0.0.1:10000; start it as .ci/run does: azurite --silent --skipApiVersionCheck --inMemoryPersistence --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 &");
        }
    }
}
