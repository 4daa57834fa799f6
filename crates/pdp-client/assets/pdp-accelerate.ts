// Written by `pdp build-client` beside the client: sends `@prisma/extension-accelerate`'s cache
// invalidations to your pdp. The extension posts `$accelerate.invalidate()` / `invalidateAll()` to Prisma's
// hosted Accelerate (accelerate.prisma-data.net) for every URL but `prisma+postgres://localhost`; this
// fetch sends them to the host of your pdp URL instead, over https, with the same API key. Queries already
// go to pdp and pass through unchanged.
//
//   import { withAccelerate } from "npm:@prisma/extension-accelerate@3.0.1";
//   import { pdpFetch } from "./pdp-accelerate.ts"; // beside client.ts / edge.ts
//   const url = "prisma://pdp.example.com/?api_key=…";
//   const prisma = new PrismaClient({ accelerateUrl: url }).$extends(withAccelerate({ fetch: pdpFetch(url) }));

/** A `fetch` for `withAccelerate({ fetch })` that sends Accelerate's own requests to the pdp at `pdpUrl`. */
export function pdpFetch(pdpUrl: string, fetchImpl: typeof fetch = fetch): typeof fetch {
  const pdp = new URL(pdpUrl.replace(/^prisma(\+postgres)?:/, "https:"));
  return (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    if (url.hostname !== "accelerate.prisma-data.net") return fetchImpl(input, init);
    url.protocol = "https:";
    url.host = pdp.host;
    return fetchImpl(input instanceof Request ? new Request(url, input) : url, init);
  };
}
