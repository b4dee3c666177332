using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.OpenAi;

namespace XGenMM.Gateway.Images;

/// <summary>
/// Fetches remote image URLs when <see cref="RemoteImageOptions.Enabled"/>, guarded against SSRF: every address the
/// host name resolves to is checked at connect time (so DNS rebinding between check and use cannot slip through), each
/// redirect is followed by hand and checked again, and the size and total time are bounded.
/// </summary>
public sealed class RemoteImageFetcher : IDisposable
{
    private readonly RemoteImageOptions _options;
    private readonly HttpClient _http;

    public RemoteImageFetcher(IOptions<RemoteImageOptions> options)
    {
        _options = options.Value;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            ConnectTimeout = TimeSpan.FromSeconds(_options.TimeoutSeconds),
            ConnectCallback = ConnectAsync,
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("XGenMM-Gateway/1.0");
    }

    public async Task<byte[]> FetchAsync(Uri url, string param, long maxBytes, CancellationToken cancellationToken)
    {
        if (!_options.Enabled)
            throw OpenAiException.Invalid("Remote image URLs are disabled on this server; send the image as a data: URL.", param, "remote_images_disabled");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(_options.TimeoutSeconds));
        long limit = Math.Min(maxBytes, _options.MaxBytes);
        try
        {
            for (int hop = 0; ; hop++)
            {
                if (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)
                    throw OpenAiException.Invalid($"The image URL's scheme '{url.Scheme}' is not allowed; use http or https.", param, "invalid_image_url");
                if (!string.IsNullOrEmpty(url.UserInfo)) throw OpenAiException.Invalid("Image URLs must not carry credentials.", param, "invalid_image_url");
                using var response = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
                if ((int)response.StatusCode is >= 300 and < 400 && response.Headers.Location is { } location)
                {
                    if (hop >= _options.MaxRedirects)
                        throw OpenAiException.Invalid($"The image URL redirected more than {_options.MaxRedirects} times.", param, "image_fetch_failed");
                    url = location.IsAbsoluteUri ? location : new Uri(url, location);
                    continue;
                }
                if (!response.IsSuccessStatusCode)
                    throw OpenAiException.Invalid($"Fetching the image failed with HTTP {(int)response.StatusCode}.", param, "image_fetch_failed");
                if (response.Content.Headers.ContentLength is long declared && declared > limit)
                    throw OpenAiException.TooLarge($"The remote image is {declared} bytes; the limit is {limit}.", "image_too_large", param);
                await using var body = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
                using var buffer = new MemoryStream();
                var chunk = new byte[81920];
                int read;
                while ((read = await body.ReadAsync(chunk, timeout.Token).ConfigureAwait(false)) > 0)
                {
                    if (buffer.Length + read > limit)
                        throw OpenAiException.TooLarge($"The remote image is larger than the limit of {limit} bytes.", "image_too_large", param);
                    buffer.Write(chunk, 0, read);
                }
                return buffer.ToArray();
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw OpenAiException.Invalid($"Fetching the image took longer than {_options.TimeoutSeconds:0.#} s.", param, "image_fetch_timeout");
        }
        catch (HttpRequestException e) when (e.InnerException is ForbiddenAddressException forbidden)
        {
            throw OpenAiException.Forbidden($"The image URL resolves to a forbidden address ({forbidden.Message}).", "image_url_forbidden", param);
        }
        catch (HttpRequestException e)
        {
            throw OpenAiException.Invalid($"Fetching the image failed: {e.Message}", param, "image_fetch_failed");
        }
    }

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var host = context.DnsEndPoint.Host;
        IPAddress[] addresses = IPAddress.TryParse(host.Trim('[', ']'), out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        if (addresses.Length == 0) throw new HttpRequestException($"'{host}' did not resolve.");
        foreach (var address in addresses)
            if (IsForbidden(address, _options.AllowLoopback))
                throw new ForbiddenAddressException($"{host} -> {address}");
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            // Connect to exactly the addresses that were checked, never a second resolution.
            await socket.ConnectAsync(addresses, context.DnsEndPoint.Port, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Loopback, private (RFC 1918, ULA), link-local (cloud metadata 169.254.169.254), CGNAT, multicast, unspecified, and IPv4 inside IPv6.</summary>
    public static bool IsForbidden(IPAddress address, bool allowLoopback = false)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (IPAddress.IsLoopback(address)) return !allowLoopback;
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return b[0] switch
            {
                0 or 10 or 127 => true,
                100 => b[1] is >= 64 and <= 127,           // 100.64/10 carrier-grade NAT
                169 => b[1] == 254,                        // link-local, cloud metadata
                172 => b[1] is >= 16 and <= 31,
                192 => (b[1] == 168) || (b[1] == 0 && b[2] is 0 or 2) || (b[1] == 88 && b[2] == 99),
                198 => b[1] is 18 or 19 || (b[1] == 51 && b[2] == 100),
                203 => b[1] == 0 && b[2] == 113,
                >= 224 => true,                            // multicast, reserved, broadcast
                _ => false,
            };
        }
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            if (address.Equals(IPAddress.IPv6None) || address.Equals(IPAddress.IPv6Any)) return true;
            if (address.IsIPv6LinkLocal || address.IsIPv6SiteLocal || address.IsIPv6Multicast || address.IsIPv6UniqueLocal) return true;
            var b = address.GetAddressBytes();
            if (b[0] == 0x20 && b[1] == 0x02) return true;                  // 6to4 can embed any IPv4 address
            if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) return true; // NAT64
            if (b.Take(12).All(x => x == 0)) return true;                   // IPv4-compatible ::a.b.c.d
            return false;
        }
        return true;
    }

    public void Dispose() => _http.Dispose();

    private sealed class ForbiddenAddressException(string message) : Exception(message);
}
