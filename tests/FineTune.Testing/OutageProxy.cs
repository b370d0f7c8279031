using System.Net;
using System.Net.Sockets;

namespace FineTune.Testing;

/// <summary>
/// A TCP relay in front of Azurite's blob endpoint that can cut storage off: during an outage every connection,
/// open or new, is reset, as when the storage account is unreachable. Clients use <see cref="ConnectionString"/>.
/// </summary>
public sealed class OutageProxy : IAsyncDisposable
{
    /// <summary>Azurite's well-known development account (public, documented), reached through the relay.</summary>
    private const string DevelopmentKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _open = [];
    private readonly Task _accepting;
    private DateTime _outageEnds = DateTime.MinValue;

    public OutageProxy()
    {
        Azurite.RequireRunning();
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public string ConnectionString =>
        $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DevelopmentKey};BlobEndpoint=http://127.0.0.1:{Port}/devstoreaccount1;";

    public bool InOutage => DateTime.UtcNow < _outageEnds;

    /// <summary>Cuts storage off for <paramref name="duration"/> from now.</summary>
    public void Outage(TimeSpan duration)
    {
        _outageEnds = DateTime.UtcNow + duration;
        lock (_open)
        {
            foreach (var client in _open)
            {
                try
                {
                    client.Client.Close(0);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    // Already reset or closed by either side (ENOTCONN): nothing left to cut. Thrown here, it would
                    // fail the training step that started the outage instead of the storage calls after it.
                }
            }
            _open.Clear();
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (InOutage)
            {
                client.Client.Close(0);
                continue;
            }
            _ = RelayAsync(client);
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using var _ = client;
        using var upstream = new TcpClient();
        lock (_open) _open.Add(client);
        try
        {
            await upstream.ConnectAsync(IPAddress.Loopback, 10000, _stop.Token);
            lock (_open) _open.Add(upstream);
            var down = client.GetStream();
            var up = upstream.GetStream();
            await Task.WhenAny(down.CopyToAsync(up, _stop.Token), up.CopyToAsync(down, _stop.Token));
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // A reset by an outage or by either side: the relay of this connection ends.
        }
        finally
        {
            lock (_open)
            {
                _open.Remove(client);
                _open.Remove(upstream);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        _stop.Dispose();
    }
}
