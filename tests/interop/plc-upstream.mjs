// An upstream PLC directory for tests/pds_interop.rs: the reference implementation
// (@did-plc/server, with its in-memory database) on 127.0.0.1, on a port the system picks.
// Prints its URL, then serves until killed.
import http from 'node:http'
import { PlcServer, Database } from '@did-plc/server'

const plc = PlcServer.create({ db: Database.mock() })
const server = http.createServer(plc.app).listen(0, '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}`)
})
