// nowebrtc.mjs: loaded with `node --import ./nowebrtc.mjs`, it stands in
// for webrtc-polyfill, whose native part (node-datachannel) npm cannot
// install here (its install script downloads a prebuilt binary). The
// interop tests use webtorrent over TCP and uTP only, never WebRTC.
import { register } from 'node:module'

register('data:text/javascript,' + encodeURIComponent(`
const stub = 'data:text/javascript,' + encodeURIComponent(
  'export const RTCPeerConnection = undefined, RTCSessionDescription = undefined, RTCIceCandidate = undefined; export default {}')
export async function resolve (specifier, context, next) {
  if (specifier === 'webrtc-polyfill') return { url: stub, shortCircuit: true }
  return next(specifier, context)
}
`))
