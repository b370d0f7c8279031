using System.Collections.Concurrent;
using Grpc.Net.Client;
using Microsoft.DurableTask.Client.Grpc;
using Microsoft.DurableTask.Worker.Grpc;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FineTune.Cli;

/// <summary>
/// The loopback gRPC channels between this process's durable worker and client and its sidecar (in-memory or Azure
/// Storage), without gRPC's 4 MB cap on a received message. A sweep's orchestration work item brings the results of the
/// stacks that finished since its last turn (each trial's epochs): at 256 trials of 300 epochs it passed 4 MB, the capped
/// worker abandoned it again and again ("Received message exceeds the maximum configured message size") and the sweep hung.
/// </summary>
internal sealed class SidecarChannels : IDisposable
{
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    public GrpcChannel For(string address) =>
        _channels.GetOrAdd(address, a => GrpcChannel.ForAddress(a, new GrpcChannelOptions { MaxReceiveMessageSize = null, MaxSendMessageSize = null }));

    public void Dispose()
    {
        foreach (var channel in _channels.Values) channel.Dispose();
    }

    /// <summary>The default worker and client, configured with their sidecar's address, talk to it over an uncapped channel.</summary>
    internal static IServiceCollection Uncap(IServiceCollection services)
    {
        services.AddSingleton<SidecarChannels>();
        services.AddOptions<GrpcDurableTaskWorkerOptions>(Options.DefaultName).PostConfigure<SidecarChannels>((options, channels) =>
        {
            if (options.Channel is null && options.CallInvoker is null && options.Address is { } address) options.Channel = channels.For(address);
        });
        services.AddOptions<GrpcDurableTaskClientOptions>(Options.DefaultName).PostConfigure<SidecarChannels>((options, channels) =>
        {
            if (options.Channel is null && options.CallInvoker is null && options.Address is { } address) options.Channel = channels.For(address);
        });
        return services;
    }
}
