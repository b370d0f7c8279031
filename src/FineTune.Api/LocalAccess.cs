using System.Security.Cryptography;
using System.Text;
using FineTune.Workflow.Jobs;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace FineTune.Api;

/// <summary>
/// Who <c>finetune serve</c> answers, as a local developer server must (Jupyter, VS Code's server): its own address
/// only (a Host naming another, as after DNS rebinding, is refused on every route); state-changing requests from its
/// own origin only (browsers send a cross-site form or <c>no-cors</c> POST without asking first, but always with
/// <c>Origin</c>); and, unless started with <c>--no-auth</c>, a per-process token on everything but the dashboard's
/// static files: <c>Authorization: Bearer TOKEN</c>, or the cookie the dashboard page sets when opened with
/// <c>?token=TOKEN</c> (HttpOnly, SameSite=Strict). It answers no CORS, so no other page reads a response.
/// </summary>
public static class LocalAccess
{
    /// <summary>The token's file in the work folder (owner-only), for scripts: <c>curl -H "Authorization: Bearer $(cat .finetune/serve-token)"</c>.</summary>
    public const string TokenFileName = "serve-token";
    /// <summary>The dashboard page's query parameter that carries the token once, to become its cookie.</summary>
    public const string TokenParameter = "token";

    /// <summary>Host names a loopback listener is reached by; their port must be the listener's.</summary>
    private static readonly string[] LoopbackNames = ["127.0.0.1", "localhost", "[::1]"];

    /// <summary>A fresh token: 192 random bits, hex.</summary>
    public static string NewToken() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));

    /// <summary>Writes the token where only this user can read it (0600), replacing an older file whatever its mode.</summary>
    public static void WriteTokenFile(string path, string token)
    {
        File.Delete(path);
        var owner = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) owner.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var file = new StreamWriter(path, Encoding.ASCII, owner);
        file.Write(token);
    }

    /// <summary>The address the server listens on (<c>http://127.0.0.1:PORT</c>), known once it has bound its port.</summary>
    public static Uri ListeningAddress(IServer server) =>
        server.Features.Get<IServerAddressesFeature>()?.Addresses.Select(a => new Uri(a)).FirstOrDefault()
        ?? throw new InvalidOperationException("the server has not bound its address yet");

    /// <summary>The cookie of this server's token: cookies do not keep ports apart, so its name carries the port.</summary>
    public static string CookieName(int port) => $"finetune-token-{port}";

    /// <summary>Admits requests as <see cref="LocalAccess"/> describes; <paramref name="token"/> null: no token (<c>--no-auth</c>).</summary>
    public static IApplicationBuilder UseLocalAccess(this IApplicationBuilder app, string? token)
    {
        var address = new Lazy<Uri>(() => ListeningAddress(app.ApplicationServices.GetRequiredService<IServer>()));
        byte[]? expected = token is null ? null : Encoding.UTF8.GetBytes(token);
        return app.Use(async (context, next) =>
        {
            int port = address.Value.Port;
            var request = context.Request;
            var response = context.Response;
            // Never framed by another page, and the token URL never leaves as a Referer.
            response.Headers.ContentSecurityPolicy = "frame-ancestors 'none'";
            response.Headers.XContentTypeOptions = "nosniff";
            response.Headers["Referrer-Policy"] = "no-referrer";
            string host = request.Host.Value ?? "";
            if (!OwnHosts(port).Contains(host, StringComparer.OrdinalIgnoreCase))
            {
                await RefuseAsync(context, 400, "Host", $"'{host}' is not this server's address (http://127.0.0.1:{port})");
                return;
            }
            if (!(HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method) || HttpMethods.IsOptions(request.Method))
                && request.Headers.Origin is { Count: > 0 } origin
                && !OwnHosts(port).Any(h => string.Equals(origin.ToString(), "http://" + h, StringComparison.OrdinalIgnoreCase)))
            {
                await RefuseAsync(context, 403, "Origin", $"'{origin}' is not this server's origin: a page of another site may not change anything here");
                return;
            }
            if (expected is null)
            {
                await next(context);
                return;
            }
            if (IsDashboardFile(request))
            {
                if (!request.Query.TryGetValue(TokenParameter, out var offered))
                {
                    await next(context);
                    return;
                }
                if (!Matches(offered.ToString(), expected))
                {
                    await RefuseAsync(context, 401, TokenParameter, "is not this server's token: open the URL `finetune serve` printed");
                    return;
                }
                // As Jupyter does: the token becomes a cookie of this host only, and leaves the address bar and history.
                response.Cookies.Append(CookieName(port), token!, new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/", IsEssential = true });
                response.Headers.CacheControl = "no-store";
                // Relative: the browser stays on the host it used (its cookie is that host's), whatever the request's Host says.
                response.Redirect(IsDocs(request.Path.Value!) ? "/" + ApiRoutes.Docs : "/");
                return;
            }
            if (!Authorized(request, port, expected))
            {
                response.Headers.WWWAuthenticate = "Bearer";
                await RefuseAsync(context, 401, "Authorization", "send 'Authorization: Bearer TOKEN' with the token `finetune serve` printed (also in its work folder's serve-token), or open the dashboard URL it printed");
                return;
            }
            await next(context);
        });
    }

    private static IEnumerable<string> OwnHosts(int port) =>
        LoopbackNames.Select(name => $"{name}:{port}").Concat(port == 80 ? LoopbackNames : []);

    /// <summary>
    /// The dashboard's and the API reference's pages and static files: no data, reachable without the token (the pages
    /// then need it for the API and the OpenAPI document).
    /// </summary>
    private static bool IsDashboardFile(HttpRequest request) =>
        (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method)) && request.Path.Value is { } path && path.StartsWith('/')
        && (Dashboard.Has(path[1..]) || IsDocs(path));

    private static bool IsDocs(string path) =>
        path == "/" + ApiRoutes.Docs || path.StartsWith("/" + ApiRoutes.Docs + "/", StringComparison.Ordinal);

    private static bool Authorized(HttpRequest request, int port, byte[] expected)
    {
        string authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return Matches(authorization["Bearer ".Length..].Trim(), expected);
        return request.Cookies.TryGetValue(CookieName(port), out var cookie) && Matches(cookie, expected);
    }

    /// <summary>Constant-time: how much of a guess is right never shows in the time taken.</summary>
    private static bool Matches(string offered, byte[] expected) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(offered), expected);

    private static Task RefuseAsync(HttpContext context, int status, string field, string reason) =>
        FineTuneApi.Problem(status, status == 400 ? "request refused" : status == 401 ? "unauthorized" : "forbidden", [new FieldError(field, reason)]).ExecuteAsync(context);
}
