// An officer on Element's own crypto stack: matrix-js-sdk with its Rust crypto (the
// stack Element Web and Desktop run), driven by devkit/element.py over JSON lines.
//
// stdin:  one request per line, {"id": n, "op": "...", ...arguments}
// stdout: one answer per line,  {"id": n, "ok": true, ...} or {"id": n, "ok": false, "error": "..."}
// stderr: the SDK's own logging (the Python side keeps it in a file).
//
// Operations: login, create_room, invite, join, accept_invite, members, send, send_file,
// download_file, react, messages, read_receipt, device_status, stop.
// Every message the officer's client sees is kept with what Element would show for it:
// its decrypted content, whether decryption failed, and the shield Element draws.

import { createInterface } from "node:readline";

// stdout is the protocol: the SDK's console output goes to stderr.
for (const level of ["log", "info", "debug", "trace", "warn"]) {
    console[level] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

// matrix-js-sdk 43 targets Node 22; on Node 20 (Debian's and this machine's) it needs
// only Promise.withResolvers (ES2024), added here as the standard defines it.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}

const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
// Element encrypts and decrypts attachments with this package (AES-CTR v2, SHA-256 of the
// ciphertext), outside the SDK; it is CommonJS, so its exports arrive as the default.
const attachmentsModule = await import("matrix-encrypt-attachment");
const { encryptAttachment, decryptAttachment } = attachmentsModule.default ?? attachmentsModule;

let client = null;
let password = null;
const seen = []; // every timeline event, in arrival order
const byId = new Map();

const MEGOLM = "m.megolm.v1.aes-sha2";

function reply(message) {
    process.stdout.write(JSON.stringify(message) + "\n");
}

function isolationMode(name) {
    // As Element Web sets them: "all" still errors on problems with *verified* users.
    if (name === "all") return new cryptoApi.AllDevicesIsolationMode(true);
    if (name === "signed") return new cryptoApi.OnlySignedDevicesIsolationMode();
    throw new Error(`unknown device isolation mode ${name}: use "all" or "signed"`);
}

// What Element would draw beside a decrypted event; null when the SDK cannot say.
async function shieldOf(event) {
    try {
        const info = await client.getCrypto().getEncryptionInfoForEvent(event);
        if (!info) return { shield_colour: null, shield_reason: null };
        return {
            shield_colour: cryptoApi.EventShieldColour[info.shieldColour],
            shield_reason: info.shieldReason === null ? null : cryptoApi.EventShieldReason[info.shieldReason],
        };
    } catch (error) {
        console.warn("no shield for", event.getId(), error);
        return { shield_colour: null, shield_reason: null };
    }
}

// What Element's push rules decide for the event as decrypted (matrix-js-sdk's
// PushProcessor over the rules the homeserver serves): would it notify, highlight, ring?
function pushOf(event) {
    try {
        const actions = client.getPushActionsForEvent(event, true);
        if (!actions) return null;
        return {
            notify: Boolean(actions.notify),
            highlight: Boolean(actions.tweaks && actions.tweaks.highlight),
            sound: (actions.tweaks && actions.tweaks.sound) || null,
        };
    } catch (error) {
        console.warn("no push actions for", event.getId(), error);
        return null;
    }
}

async function record(event) {
    const roomId = event.getRoomId();
    if (!roomId) return;
    const initialId = event.getId();
    if (initialId && byId.has(initialId)) return;
    if (event.isEncrypted()) {
        await client.decryptEventIfNeeded(event);
        if (event.isBeingDecrypted()) await new Promise((resolve) => event.once("Event.decrypted", resolve));
    }
    const entry = {
        event, // its id is read when asked: a local echo gets its real id once sent
        room_id: roomId,
        sender: event.getSender(),
        type: event.getType(),
        encrypted: event.isEncrypted(),
        origin_server_ts: event.getTs(),
        content: event.getContent(),
        decryption_failure: event.isDecryptionFailure(),
        // Why Element cannot show it (DecryptionFailureCode), e.g. a key withheld as unverified.
        decryption_failure_reason: event.decryptionFailureReason ?? null,
        push: event.isDecryptionFailure() ? null : pushOf(event),
        shield_colour: null,
        shield_reason: null,
    };
    if (event.isEncrypted() && !event.isDecryptionFailure()) Object.assign(entry, await shieldOf(event));
    if (initialId && byId.has(initialId)) return;
    if (initialId) byId.set(initialId, entry);
    seen.push(entry);
}

// A failed decryption is retried by the SDK when the key arrives; keep the newer result,
// shield first, so that a reader never sees a decrypted entry without its shield.
function watchRetries(event) {
    event.on("Event.decrypted", async () => {
        const entry = byId.get(event.getId());
        if (!entry || !entry.decryption_failure) return;
        if (event.isDecryptionFailure()) {
            // Still unreadable, maybe for a reason learnt since (a withheld notice).
            entry.decryption_failure_reason = event.decryptionFailureReason ?? null;
            return;
        }
        const shield = await shieldOf(event);
        Object.assign(entry, shield, {
            type: event.getType(),
            content: event.getContent(),
            decryption_failure: false,
            decryption_failure_reason: null,
            push: pushOf(event),
        });
    });
}

function published(entry) {
    const { event, ...rest } = entry;
    return { ...rest, event_id: event.getId() };
}

function waitForSync(target) {
    return new Promise((resolve, reject) => {
        const onSync = (state) => {
            if (state === "PREPARED" || state === "SYNCING") {
                target.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                target.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error("the first sync failed"));
            }
        };
        target.on(sdk.ClientEvent.Sync, onSync);
    });
}

const operations = {
    async login({ base_url, user, password: secret, isolation, device_name, cross_sign = true }) {
        const anonymous = sdk.createClient({ baseUrl: base_url });
        const session = await anonymous.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user },
            password: secret,
            initial_device_display_name: device_name || "Element (matrix-js-sdk)",
        });
        password = secret;
        client = sdk.createClient({
            baseUrl: base_url,
            userId: session.user_id,
            deviceId: session.device_id,
            accessToken: session.access_token,
        });
        await client.initRustCrypto({ useIndexedDB: false });
        const crypto = client.getCrypto();
        crypto.setDeviceIsolationMode(isolationMode(isolation));
        // What Element does at first login: publish cross-signing keys and sign this device.
        // cross_sign: false is a second session the officer never verified (no signature).
        if (cross_sign) await crypto.bootstrapCrossSigning({
            authUploadDeviceSigningKeys: async (makeRequest) => {
                await makeRequest({
                    type: "m.login.password",
                    identifier: { type: "m.id.user", user: session.user_id },
                    password,
                });
            },
        });
        client.on(sdk.RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
            if (toStartOfTimeline) return;
            watchRetries(event);
            record(event).catch((error) => console.warn("recording an event failed:", error));
        });
        const synced = waitForSync(client);
        await client.startClient({ initialSyncLimit: 50, threadSupport: false });
        await synced;
        // The device's own signature shows once the SDK has queried its own keys back.
        let status = null;
        const deadline = Date.now() + (cross_sign ? 15000 : 0);
        while (Date.now() < deadline) {
            status = await crypto.getDeviceVerificationStatus(session.user_id, session.device_id);
            if (status && status.signedByOwner) break;
            await new Promise((resolve) => setTimeout(resolve, 100));
        }
        return {
            user_id: session.user_id,
            device_id: session.device_id,
            cross_signed: Boolean(status && status.signedByOwner),
            crypto: crypto.getVersion(),
        };
    },

    async create_room({ name, invite }) {
        const { room_id } = await client.createRoom({
            name,
            preset: "private_chat",
            invite: invite || [],
            initial_state: [
                { type: "m.room.history_visibility", state_key: "", content: { history_visibility: "shared" } },
                { type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } },
            ],
        });
        await until(() => client.getRoom(room_id), `room ${room_id} in the sync`);
        return { room_id };
    },

    async invite({ room_id, user_id }) {
        await client.invite(room_id, user_id);
        return {};
    },

    async join({ room_id }) {
        await client.joinRoom(room_id);
        await until(() => client.getRoom(room_id)?.getMyMembership() === "join", `joined ${room_id}`);
        return {};
    },

    async accept_invite({ timeout_ms }) {
        let invited = null;
        await until(() => {
            invited = client.getRooms().find((room) => room.getMyMembership() === "invite");
            return invited;
        }, "an invite", timeout_ms || 30000);
        await client.joinRoom(invited.roomId);
        await until(() => client.getRoom(invited.roomId)?.getMyMembership() === "join",
            `joined ${invited.roomId}`);
        return { room_id: invited.roomId };
    },

    async members({ room_id }) {
        const room = client.getRoom(room_id);
        if (!room) throw new Error(`room ${room_id} is not known to this client`);
        return {
            members: Object.fromEntries(room.getMembers().map((member) => [member.userId, member.membership])),
        };
    },

    async send({ room_id, content }) {
        const { event_id } = await client.sendEvent(room_id, "m.room.message", content);
        return { event_id };
    },

    // A photo or file as Element sends it into an encrypted room (ContentMessages): encrypted
    // in the client, uploaded as octet-stream without its name, then m.image/m.file with
    // the name as body (no `filename`, no caption) and `file` = the key material + url.
    // An m.image carries the size Element read from the picture (info.w, info.h).
    async send_file({ room_id, data_b64, mimetype, name, msgtype, thread_root, width, height }) {
        const plaintext = Buffer.from(data_b64, "base64");
        const bytes = plaintext.buffer.slice(plaintext.byteOffset, plaintext.byteOffset + plaintext.length);
        const encrypted = await encryptAttachment(bytes);
        const { content_uri: url } = await client.uploadContent(new Blob([encrypted.data]), {
            includeFilename: false,
            type: "application/octet-stream",
        });
        const content = {
            msgtype: msgtype || "m.file",
            body: name,
            info: { mimetype, size: plaintext.length, ...(width && height ? { w: width, h: height } : {}) },
            file: { ...encrypted.info, url },
            "m.mentions": {},
        };
        if (thread_root) {
            content["m.relates_to"] = {
                rel_type: "m.thread",
                event_id: thread_root,
                is_falling_back: true,
                "m.in_reply_to": { event_id: thread_root },
            };
        }
        const { event_id } = await client.sendEvent(room_id, "m.room.message", content);
        return { event_id };
    },

    // What Element does to show an encrypted attachment: fetch the ciphertext over the
    // authenticated media API, check its hash and decrypt it with the event's key.
    async download_file({ file }) {
        const address = client.mxcUrlToHttp(file.url, undefined, undefined, undefined, false, true, true);
        if (!address) throw new Error(`not a media address: ${file.url}`);
        const response = await fetch(address, {
            headers: { Authorization: `Bearer ${client.getAccessToken()}` },
        });
        if (!response.ok) throw new Error(`download ${file.url}: HTTP ${response.status}`);
        // In a browser the key goes through WebCrypto's JWK import, which checks kty, alg,
        // key_ops and ext; the package's Node path does not, so check it the browser's way.
        await crypto.subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, ["encrypt", "decrypt"]);
        const plaintext = await decryptAttachment(await response.arrayBuffer(), file);
        return { data_b64: Buffer.from(plaintext).toString("base64") };
    },

    async react({ room_id, event_id, key }) {
        const sent = await client.sendEvent(room_id, "m.reaction", {
            "m.relates_to": { rel_type: "m.annotation", event_id, key },
        });
        return { event_id: sent.event_id };
    },

    async messages({ room_id }) {
        return { messages: seen.filter((entry) => !room_id || entry.room_id === room_id).map(published) };
    },

    // The read receipt (m.read) Element holds for a user in a room's main timeline: what
    // it draws as that user's avatar under the last event they read.
    async read_receipt({ room_id, user_id }) {
        const room = client.getRoom(room_id);
        const receipt = room ? room.getReadReceiptForUserId(user_id, true) : null;
        return receipt
            ? { event_id: receipt.eventId, thread_id: receipt.data.thread_id ?? null }
            : { event_id: null, thread_id: null };
    },

    async device_status({ user_id, device_id }) {
        await client.getCrypto().getUserDeviceInfo([user_id], true); // queried, not guessed
        const status = await client.getCrypto().getDeviceVerificationStatus(user_id, device_id);
        return {
            known: status !== null,
            signed_by_owner: Boolean(status && status.signedByOwner),
            cross_signing_verified: Boolean(status && status.crossSigningVerified),
        };
    },

    async stop() {
        if (client) client.stopClient();
        setTimeout(() => process.exit(0), 10);
        return {};
    },
};

async function until(condition, what, timeoutMs = 30000) {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
    let request;
    try {
        request = JSON.parse(line);
    } catch (error) {
        reply({ id: null, ok: false, error: `not JSON: ${error.message}` });
        return;
    }
    const operation = operations[request.op];
    if (!operation) {
        reply({ id: request.id, ok: false, error: `unknown operation ${request.op}` });
        return;
    }
    if (request.op !== "login" && !client) {
        reply({ id: request.id, ok: false, error: "log in first" });
        return;
    }
    try {
        reply({ id: request.id, ok: true, ...(await operation(request)) });
    } catch (error) {
        reply({ id: request.id, ok: false, error: String(error && error.stack ? error.stack : error) });
    }
});
lines.on("close", () => {
    if (client) client.stopClient();
    process.exit(0);
});
