// An osls (Serverless Framework) plugin, loaded by serverless.yml's `plugins:`: the variable
// source `${agentImage:uri}`, the functions' image in the image form
// (`--param="packageType=image" --param="imageUri=..."`), checked as the configuration is
// resolved. A missing or unusable URI then fails `osls package` with a message that names the
// param and the rule, instead of a schema error about `functions.*.image` (missing), or a
// template that CloudFormation refuses only at deploy time (a malformed digest, an image in
// another region). In the zip form it resolves to null (no image).
//
// Lambda runs container images from Amazon ECR only, in a repository of the function's own
// region (Lambda developer guide, "Create a Lambda function using a container image"): the URI
// is `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY` with `@sha256:<64 hex digits>` (what
// serverless.yml documents: packaging then needs no AWS call) or `:TAG` (osls asks ECR for the
// digest while packaging).

const ECR_IMAGE =
  /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([a-z0-9]+(?:[._/-][a-z0-9]+)*)(?:@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$/;

export default class ImageUriPlugin {
  constructor(serverless) {
    const fail = (code, message) => {
      throw new serverless.classes.Error(`${code}: ${message}`, code);
    };
    this.configurationVariablesSources = {
      agentImage: {
        async resolve({ resolveVariable }) {
          if ((await resolveVariable("param:packageType")) !== "image") return { value: null };
          const uri = await resolveVariable("param:imageUri");
          const region = await resolveVariable("self:provider.region");
          if (typeof uri !== "string" || uri.trim() === "") {
            fail(
              "IMAGE_URI_MISSING",
              `packageType is image but no image URI was given: pass --param="imageUri=ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY@sha256:DIGEST" (docs/ecs.md, "Lambda from the image")`,
            );
          }
          const match = ECR_IMAGE.exec(uri);
          if (!match) {
            fail(
              "IMAGE_URI_INVALID",
              `expected imageUri to be an Amazon ECR image, ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY@sha256:<64 hex digits> (or :TAG), got ${JSON.stringify(uri)}`,
            );
          }
          if (typeof region === "string" && match[2] !== region) {
            fail(
              "IMAGE_URI_REGION",
              `the image is in ${match[2]} and the functions deploy to ${region}: Lambda runs images from an ECR repository of the function's own region (push it there, or deploy with --region ${match[2]})`,
            );
          }
          return { value: uri };
        },
      },
    };
  }
}
