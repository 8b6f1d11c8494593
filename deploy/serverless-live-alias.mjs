// An osls (Serverless Framework) plugin, loaded by serverless.yml's `plugins:`: gives every
// function of the service an alias (`live`, or `custom.rollout.alias`) that Jenkins and the
// controller invoke, and the async-invocation settings of that alias.
//
// CloudFormation creates the alias once, on $LATEST, and never moves it afterwards (its
// properties never change): moving it is the deploy command's job (`npm run deploy`, deploy/),
// which smoke-checks each new version before it points the alias at it. So a stack update
// publishes a version (provider.versionFunctions) and leaves the alias where it was.
//
// Async settings are per qualifier: the EventInvokeConfig serverless makes for a function's
// `maximumRetryAttempts` / `maximumEventAge` applies to $LATEST only, not to invocations of an
// alias. Without a copy for the alias, `jnlp-agent-git-bash:live` would get Lambda's defaults
// (two retries, six hours): a failed agent start replayed, an agent started long after Jenkins
// gave up on it.

const ALIAS_NAME = /^(?!^[0-9]+$)[a-zA-Z0-9-_]{1,128}$/;

export default class LiveAliasPlugin {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { "after:package:compileFunctions": () => this.addAliases() };
  }

  addAliases() {
    const { service } = this.serverless;
    const naming = this.serverless.getProvider("aws").naming;
    const alias = service.custom?.rollout?.alias ?? "live";
    const fail = (message) => {
      throw new this.serverless.classes.Error(message, "ROLLOUT_ALIAS_CONFIG");
    };
    if (typeof alias !== "string" || !ALIAS_NAME.test(alias) || alias === "LATEST") {
      fail(
        `custom.rollout.alias must be a Lambda alias name (letters, digits, - and _), got ${JSON.stringify(alias)}`,
      );
    }
    if (service.provider.versionFunctions === false) {
      fail("the live alias needs provider.versionFunctions: true (a version per deploy to point it at)");
    }
    const template = service.provider.compiledCloudFormationTemplate;
    for (const name of service.getAllFunctions()) {
      const functionObject = service.getFunction(name);
      const functionId = naming.getLambdaLogicalId(name);
      if (!template.Resources[functionId]) continue;
      const condition = functionObject.condition ? { Condition: functionObject.condition } : {};
      const aliasId = `${naming.getNormalizedFunctionName(name)}RolloutAlias`;
      template.Resources[aliasId] = {
        Type: "AWS::Lambda::Alias",
        ...condition,
        Properties: {
          FunctionName: { Ref: functionId },
          Name: alias,
          // Where the alias starts; the deploy command moves it to a checked version.
          FunctionVersion: "$LATEST",
        },
      };
      const latestConfig = template.Resources[naming.getLambdaEventConfigLogicalId(name)];
      if (latestConfig) {
        template.Resources[`${naming.getNormalizedFunctionName(name)}RolloutAliasEvConf`] = {
          Type: "AWS::Lambda::EventInvokeConfig",
          ...condition,
          DependsOn: [aliasId],
          Properties: { ...latestConfig.Properties, Qualifier: alias },
        };
      }
      template.Outputs[`${naming.getNormalizedFunctionName(name)}RolloutAliasArn`] = {
        Description: `The ${alias} alias of ${functionObject.name ?? name}: what Jenkins and the controller invoke`,
        ...condition,
        Value: { Ref: aliasId },
      };
    }
  }
}
