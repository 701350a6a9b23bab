import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilder;
import org.neo4j.harness.Neo4jBuilders;

/**
 * Runs an in-process Neo4j with APOC for the test suite.
 *
 * <p>Usage: {@code Launcher WORKDIR PLUGIN_DIR [PORT] [DATA_DIR]}. Bolt listens on 127.0.0.1 at PORT (0 picks a free
 * port), authentication is off and the HTTP server is disabled. When the server is ready, one line
 * {@code BOLT_URI=bolt://127.0.0.1:PORT} goes to stdout. The system property {@code launcher.transactionMaxBytes}
 * sets the memory limit of one transaction ({@code db.memory.transaction.max}). The server closes on SIGTERM or when stdin reaches end of
 * file, so it also stops when the process that started it dies.
 */
public final class Launcher {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Launcher WORKDIR PLUGIN_DIR [PORT] [DATA_DIR]");
            System.exit(2);
        }
        Path workdir = Files.createDirectories(Path.of(args[0]));
        Path pluginDir = Path.of(args[1]).toAbsolutePath();
        int port = args.length > 2 ? Integer.parseInt(args[2]) : 0;

        Neo4jBuilder builder = Neo4jBuilders.newInProcessBuilder(workdir)
                .withDisabledServer()
                .withConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .withConfig(GraphDatabaseSettings.plugin_dir, pluginDir)
                .withConfig(GraphDatabaseSettings.procedure_unrestricted, List.of("apoc.*"));
        long transactionMaxBytes = Long.getLong("launcher.transactionMaxBytes", 0L);
        if (transactionMaxBytes > 0) {
            // A per-transaction memory limit lets tests provoke the server's "too large" error.
            builder = builder.withConfig(GraphDatabaseSettings.memory_transaction_max_size, transactionMaxBytes);
        }
        if (args.length > 3) {
            // A fixed data directory lets a test stop the server and start it again on the same store.
            builder = builder.withConfig(GraphDatabaseSettings.data_directory, Path.of(args[3]).toAbsolutePath());
        }
        Neo4j neo4j = builder.build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            neo4j.close();
            stopped.countDown();
        }));
        System.out.println("BOLT_URI=" + neo4j.boltURI());
        System.out.flush();

        waitForEndOfInput(System.in);
        System.exit(0);
    }

    private static void waitForEndOfInput(InputStream input) {
        byte[] buffer = new byte[256];
        try {
            while (input.read(buffer) >= 0) {
                // Discard: only the end of the stream matters.
            }
        } catch (IOException error) {
            // A broken stdin means the parent is gone, which is the same signal as end of file.
        }
    }
}
